"""Early fusion (column concatenation) and late fusion (ensemble, stacking) of modality blocks.

A *block spec* maps a block name (one modality of one feature family, e.g. ``radiomics_us``) to its
columns in a shared feature frame; a patient without that modality has NaN in all of them.
"""

from mmdlr.fuse.blocks import block_presence, fusion_subsets
from mmdlr.fuse.ensemble import AccuracyWeightedEnsemble
from mmdlr.fuse.late import BaseFit, fit_base, out_of_fold_probabilities
from mmdlr.fuse.stacking import StackingFusion

__all__ = ["AccuracyWeightedEnsemble", "BaseFit", "StackingFusion", "block_presence", "fit_base", "fusion_subsets",
           "out_of_fold_probabilities"]
