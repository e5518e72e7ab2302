"""Selection inside the folds keeps pure noise at chance; selecting on all data first does not."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmdlr.classify import model_search, radiomics_steps
from mmdlr.select import MannWhitneyFilter

SEEDS = (0, 1, 2, 3)


def _noise(seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 2000)), columns=[f"f{j}" for j in range(2000)])
    y = rng.permutation(np.r_[np.zeros(30), np.ones(30)]).astype(int)
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # LassoCV path ends at p >> n
def test_nested_cv_auc_on_noise_is_chance_and_leaky_selection_is_not():
    honest, leaky = [], []
    for seed in SEEDS:
        X, y = _noise(seed)
        outer = StratifiedKFold(5, shuffle=True, random_state=seed)
        pipeline = model_search(radiomics_steps(list(X.columns), random_state=seed), {"lr": {"C": [1.0]}},
                                inner_folds=3, random_state=seed)
        honest.append(roc_auc_score(y, cross_val_predict(pipeline, X, y, cv=outer, method="predict_proba")[:, 1]))
        selected = MannWhitneyFilter().fit(X, y).get_support()  # leak: filter sees the test folds' labels
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        leaky.append(roc_auc_score(y, cross_val_predict(classifier, X.loc[:, selected], y, cv=outer,
                                                        method="predict_proba")[:, 1]))
    # measured: honest 0.37, 0.63, 0.57, 0.48 (mean 0.51); leaky >= 0.99 for every seed
    assert 0.35 <= np.mean(honest) <= 0.65
    assert min(leaky) > 0.85
