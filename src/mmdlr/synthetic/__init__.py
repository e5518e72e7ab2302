"""Synthetic multimodal breast cohort (demo data and test fixture)."""

from mmdlr.synthetic.cohort import CohortSettings, generate_cohort

__all__ = ["CohortSettings", "generate_cohort"]
