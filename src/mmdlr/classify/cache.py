"""In-process cache of fitted pipeline steps, so a grid search fits its pre-processing once per fold."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from mmdlr.digest import content_digest


class FitCache:
    """``Pipeline(memory=FitCache())``: a step fitted on the same data with the same parameters is fitted once.

    Implements the ``cache`` method of the :class:`joblib.Memory` interface that scikit-learn's
    :class:`~sklearn.pipeline.Pipeline` calls for each pre-processing step. The key is the
    :func:`~mmdlr.digest.content_digest` of the (unfitted) step and everything it is fitted on (``X``, ``y``,
    fit parameters), so an entry is only reused for identical training data: a grid search's candidates
    share the steps fitted on one inner training fold (their pre-processing parameters are the same), and
    nothing crosses folds.

    Copies and clones (``sklearn.base.clone`` deep-copies non-estimator parameters) share one store;
    :class:`PreprocessOnceSearchCV` empties it after every fit, so fitted models carry no cached data.
    """

    def __init__(self):
        self._store: dict[str, object] = {}

    def cache(self, func: Callable, ignore: Sequence[str] = ()) -> Callable:
        signature = inspect.signature(func)

        def cached(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            inputs = {name: value for name, value in bound.arguments.items() if name not in ignore}
            key = content_digest((func.__module__, func.__qualname__, inputs))
            if key not in self._store:
                self._store[key] = func(*args, **kwargs)
            return self._store[key]

        return cached

    def clear(self) -> None:
        self._store.clear()

    def __deepcopy__(self, memo) -> FitCache:
        return self

    def __repr__(self) -> str:
        return "FitCache()"
