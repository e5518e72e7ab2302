"""Writes combat_reference.json: neuroHarmonize's own ComBat output on a small array, the reference of
tests/analysis/test_harmonize.py. neuroHarmonize 2.5.2 pins numpy<2, so it runs in a venv of its own:
python3.11 -m venv /tmp/nh && /tmp/nh/bin/pip install neuroHarmonize==2.5.2 && /tmp/nh/bin/python combat_reference.py

Its new-site path (``harmonizationLearn(orig_model=...)``) has two bugs on neuroCombat 0.2.12: the new
sites' info dict lacks ``ref_level`` (KeyError; shimmed below as None, which is what it means there), and
without covariates its design and B_hat shapes agree only when there are as many new sites as training
sites (so three new sites against three training sites, and one against one). New sites are estimated
with eb=False, as mmdlr does (see ComBatHarmonizer).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from neuroHarmonize import harmonizationApply, harmonizationLearn


def _with_ref_level(function):
    """``function`` with ``ref_level: None`` added to the info dict (the argument holding ``batch_info``)."""
    def call(*args, **kwargs):
        for arg in args:
            if isinstance(arg, dict) and "batch_info" in arg:
                arg.setdefault("ref_level", None)
        return function(*args, **kwargs)
    return call


learn_module = sys.modules["neuroHarmonize.harmonizationLearn"]
for name in ("find_parametric_adjustments", "adjust_data_final"):
    setattr(learn_module, name, _with_ref_level(getattr(learn_module, name)))

rng = np.random.default_rng(7)
shift = {"A": 0.0, "B": 3.0, "C": -2.0, "D": 6.0, "E": -4.0, "F": 1.0}
scale = {"A": 1.0, "B": 2.0, "C": 0.5, "D": 3.0, "E": 0.7, "F": 1.5}


def site_rows(sites):
    base = rng.normal(size=(len(sites), 4)) * [1.0, 2.0, 0.5, 4.0] + [10.0, -5.0, 0.0, 100.0]
    return np.array([row * scale[s] + shift[s] for row, s in zip(base, sites)])


def learned(data, sites, orig_model=None):
    """The model fit with empirical Bayes; new sites (``orig_model``) by least squares (mmdlr's choice)."""
    return harmonizationLearn(data, pd.DataFrame({"SITE": sites}), eb=orig_model is None, orig_model=orig_model)


# three training sites, rows of seen sites, three new sites
train_sites = np.repeat(["A", "B", "C"], [10, 12, 9])
seen_sites = np.array(["A", "B", "B", "C", "A"])
new_sites = np.repeat(["D", "E", "F"], [7, 6, 8])
train, seen, new = site_rows(train_sites), site_rows(seen_sites), site_rows(new_sites)
model, train_harmonized = learned(train, train_sites)
seen_harmonized = harmonizationApply(seen, pd.DataFrame({"SITE": seen_sites}), model)
new_harmonized = learned(new, new_sites, model)[1]
# leave-centre-out with two centres: trained on A alone, applied to new site D
one_site_model, one_site_harmonized = learned(train[train_sites == "A"], train_sites[train_sites == "A"])
d_rows = new[new_sites == "D"]
d_harmonized = learned(d_rows, new_sites[new_sites == "D"], one_site_model)[1]
reference = {name: np.asarray(value).tolist() for name, value in {
    "train": train, "train_sites": train_sites, "train_harmonized": train_harmonized,
    "seen": seen, "seen_sites": seen_sites, "seen_harmonized": seen_harmonized,
    "new": new, "new_sites": new_sites, "new_harmonized": new_harmonized,
    "one_site_harmonized": one_site_harmonized, "d_harmonized": d_harmonized}.items()}
Path(__file__).with_suffix(".json").write_text(json.dumps(reference, indent=1) + "\n")
