"""The seven classifiers of the paper, the per-family pipelines and the inner-CV model choice."""

from mmdlr.classify.pipelines import (RAD_DF_READING, deep_steps, harmonized, pca_of_all_steps, rad_df_steps,
                                      radiomics_steps)
from mmdlr.classify.search import chosen_classifier, model_search
from mmdlr.classify.zoo import CLASSIFIERS, DEFAULT_GRIDS, DISPLAY_NAMES, make_classifier

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_GRIDS",
    "DISPLAY_NAMES",
    "RAD_DF_READING",
    "chosen_classifier",
    "deep_steps",
    "harmonized",
    "make_classifier",
    "model_search",
    "pca_of_all_steps",
    "rad_df_steps",
    "radiomics_steps",
]
