"""The decoded-size limit every image reader checks from the header before decoding.

One process-wide value (``io.max_decoded_mb`` of the run config; ``mmdlr serve --max-decoded-mb``),
kept in the environment so worker processes (loky, Dask, the bundle's data loaders) inherit it.
"""

from __future__ import annotations

import os

ENVIRONMENT_KEY = "MMDLR_MAX_DECODED_MB"
CLI_MAX_DECODED_MB = 2048.0
SERVE_MAX_DECODED_MB = 256.0


def set_max_decoded_mb(megabytes: float) -> None:
    """Set the limit for this process and the workers it starts."""
    if not megabytes > 0:
        raise ValueError(f"io.max_decoded_mb must be a positive number of MB, not {megabytes!r}")
    os.environ[ENVIRONMENT_KEY] = repr(float(megabytes))


def max_decoded_mb() -> float:
    """The limit in force (the CLI default when none was set)."""
    return float(os.environ.get(ENVIRONMENT_KEY) or CLI_MAX_DECODED_MB)


def max_decoded_bytes() -> int:
    return int(max_decoded_mb() * 2**20)
