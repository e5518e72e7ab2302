"""Serving a finished run: one Predictor behind `mmdlr predict` and the MONAI Label-style HTTP server.

The names below load on first use, so that `mmdlr.serve.settings` (the CLI's defaults) imports no torch.
"""

from importlib import import_module

_SOURCES = {"CaseFiles": "predictor", "MissingModalityError": "predictor", "Prediction": "predictor",
            "Predictor": "predictor", "RunFolder": "run_folder", "ServedModel": "run_folder",
            "UnknownModelError": "run_folder"}
__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_SOURCES[name]}"), name)
