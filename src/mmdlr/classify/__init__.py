"""The seven classifiers of the paper, the per-family pipelines and the inner-CV model choice."""

from mmdlr.classify.pipelines import combined_steps, deep_steps, radiomics_steps
from mmdlr.classify.search import chosen_classifier, model_search
from mmdlr.classify.zoo import CLASSIFIERS, DEFAULT_GRIDS, DISPLAY_NAMES, make_classifier

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_GRIDS",
    "DISPLAY_NAMES",
    "chosen_classifier",
    "combined_steps",
    "deep_steps",
    "make_classifier",
    "model_search",
    "radiomics_steps",
]
