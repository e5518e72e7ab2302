"""Evaluation metrics of the trained classifier, written as JSON."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from mmdlr.atomic import write_text

logger = logging.getLogger(__name__)


def write_metrics(metrics: Mapping[str, float], path: str | os.PathLike, **context: object) -> Path:
    """Write ``metrics`` (plus context such as modality, split, n) to ``path`` as JSON, and log them.

    An undefined metric (e.g. AUC on a single-class split) is written as null.
    """
    values = {name: float(value) for name, value in metrics.items()}
    report = {**context, **{name: None if math.isnan(v) else v for name, v in values.items()}}
    logger.info("evaluation: %s", ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in report.items()))
    return write_text(json.dumps(report, indent=2) + "\n", path)
