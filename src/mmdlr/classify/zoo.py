"""The seven candidate classifiers (fixed seeds, single-threaded) and their default grids."""

from __future__ import annotations

from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from xgboost import XGBClassifier

from mmdlr.evaluate.splits import StratifiedFoldsWithGroups


class PlattScaledSVC(ClassifierMixin, BaseEstimator):
    """SVC with Platt-scaled probabilities whose calibration folds keep groups together.

    ``CalibratedClassifierCV(estimator, method="sigmoid", ensemble=False)`` is the replacement
    scikit-learn 1.9 gives for the deprecated ``SVC(probability=True)``, but with ``ensemble=False`` it
    drops routed ``groups`` before its internal split. So ``fit`` takes ``groups`` (metadata routing
    hands them by default) and passes the calibrator the folds of
    :class:`~mmdlr.evaluate.StratifiedFoldsWithGroups` (seeded by ``random_state``). Hyper-parameters
    are ``estimator__C``, ``estimator__gamma``, ...

    ``calibrate=False`` fits the SVC alone (one fit instead of ``cv + 1``) and has no ``predict_proba``: a model
    search scores such a candidate by its ``decision_function``, whose ROC AUC is the calibrated model's (the
    sigmoid is monotone and the SVC is the one fitted on all the data either way).
    """

    __metadata_request__fit = {"groups": True}

    def __init__(self, estimator=None, cv: int = 5, random_state: int = 0, calibrate: bool = True):
        self.estimator = estimator
        self.cv = cv
        self.random_state = random_state
        self.calibrate = calibrate

    def fit(self, X, y, groups=None):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        svc = SVC() if self.estimator is None else clone(self.estimator)
        if self.calibrate:
            folds = StratifiedFoldsWithGroups(self.cv, self.random_state).split(X, y, groups)
            self.calibrated_ = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False, cv=list(folds)).fit(X, y)
        else:
            self.svc_ = svc.fit(X, y)
        self.classes_ = self._fitted_svc().classes_
        return self

    def _fitted_svc(self) -> SVC:
        """The SVC fitted on all of ``fit``'s data (inside the calibrator when calibrated)."""
        return self.calibrated_.calibrated_classifiers_[0].estimator if self.calibrate else self.svc_

    @available_if(lambda self: self.calibrate)
    def predict_proba(self, X):
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(validate_data(self, X, reset=False))

    def decision_function(self, X):
        check_is_fitted(self, "classes_")
        return self._fitted_svc().decision_function(validate_data(self, X, reset=False))

    def predict(self, X):
        check_is_fitted(self, "classes_")
        X = validate_data(self, X, reset=False)
        return (self.calibrated_ if self.calibrate else self.svc_).predict(X)

    def __setstate__(self, state):
        """Model files saved before ``calibrate`` existed hold calibrated models."""
        super().__setstate__({"calibrate": True, **state})


_FACTORIES = {
    "svm": lambda seed: PlattScaledSVC(SVC(), random_state=seed),
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
# the classifiers a model search screens with a share of their trees (they have n_estimators)
TREE_ENSEMBLES = frozenset(name for name, factory in _FACTORIES.items() if "n_estimators" in factory(0).get_params())

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
