"""Serving a finished run: one Predictor behind `mmdlr predict` and the MONAI Label-style HTTP server."""

from mmdlr.serve.predictor import CaseFiles, MissingModalityError, Prediction, Predictor
from mmdlr.serve.run_folder import RunFolder, ServedModel, UnknownModelError

__all__ = ["CaseFiles", "MissingModalityError", "Prediction", "Predictor", "RunFolder", "ServedModel",
           "UnknownModelError"]
