"""The seven candidate classifiers (fixed seeds, single-threaded) and their default grids."""

from __future__ import annotations

from lightgbm import LGBMClassifier
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from xgboost import XGBClassifier


def _svm(seed: int) -> CalibratedClassifierCV:
    """SVC with Platt-scaled probabilities: the replacement scikit-learn 1.9 gives for the deprecated
    ``SVC(probability=True)``; its hyper-parameters are ``estimator__C``, ``estimator__gamma``, ..."""
    return CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)


_FACTORIES = {
    "svm": _svm,
    "knn": lambda seed: KNeighborsClassifier(),
    "rf": lambda seed: RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=seed),
    "extratrees": lambda seed: ExtraTreesClassifier(n_estimators=200, n_jobs=1, random_state=seed),
    "xgboost": lambda seed: XGBClassifier(n_estimators=200, learning_rate=0.05, n_jobs=1, random_state=seed),
    "lightgbm": lambda seed: LGBMClassifier(n_estimators=200, learning_rate=0.05, min_child_samples=5, n_jobs=1,
                                            verbose=-1, random_state=seed),
    "lr": lambda seed: LogisticRegression(max_iter=2000, random_state=seed),
}
_TYPES = {name: type(factory(0)) for name, factory in _FACTORIES.items()}

CLASSIFIERS = tuple(_FACTORIES)

DISPLAY_NAMES = {
    "svm": "SVM", "knn": "KNN", "rf": "RF", "extratrees": "ExtraTrees",
    "xgboost": "XGBoost", "lightgbm": "LightGBM", "lr": "LR",
}

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "svm": {"estimator__C": [0.1, 1.0, 10.0]},
    "knn": {"n_neighbors": [5, 9, 15]},
    "rf": {"max_depth": [None, 5]},
    "extratrees": {"max_depth": [None, 5]},
    "xgboost": {"max_depth": [2, 4]},
    "lightgbm": {"num_leaves": [7, 15]},
    "lr": {"C": [0.1, 1.0, 10.0]},
}


def make_classifier(name: str, random_state: int = 0) -> ClassifierMixin:
    """A fresh, seeded instance of classifier ``name`` (one of ``CLASSIFIERS``)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return _FACTORIES[name](random_state)


def classifier_key(estimator) -> str:
    """The ``CLASSIFIERS`` key of a classifier instance made by :func:`make_classifier`."""
    for name, cls in _TYPES.items():
        if type(estimator) is cls:
            return name
    raise ValueError(f"{type(estimator).__name__} is not one of the seven classifiers")
