"""lucent's ``misc.channel_reducer``: scikit-learn decompositions over the last axis of any array."""

from __future__ import annotations

import numpy as np

__all__ = ["ChannelReducer"]


def _decompositions() -> dict[str, type]:
    import sklearn.decomposition
    from sklearn.base import BaseEstimator

    found = {}
    for name in dir(sklearn.decomposition):
        obj = getattr(sklearn.decomposition, name)
        if isinstance(obj, type) and issubclass(obj, BaseEstimator):
            found[name] = obj
    return found


class ChannelReducer:
    """Reduce the innermost axis of ``[..., C]`` arrays to ``n_components`` with a
    ``sklearn.decomposition`` estimator ("NMF" by default, or "PCA", "FastICA", ..., or a class).

    ``reducer(acts)`` fits on first use and transforms afterwards; fitted attributes of the
    estimator are read without their trailing underscore (``reducer.components``).
    """

    def __init__(self, n_components: int = 3, reduction_alg="NMF", **kwargs):
        if not isinstance(n_components, int) or isinstance(n_components, bool):
            raise ValueError(f"n_components must be an int, not {n_components!r}")
        if n_components <= 0:
            raise ValueError("n_components must be strictly > 0")
        if isinstance(reduction_alg, str):
            algorithms = _decompositions()
            if reduction_alg not in algorithms:
                raise ValueError(
                    f"Unknown dimensionality reduction method {reduction_alg!r}; one of {sorted(algorithms)}"
                )
            reduction_alg = algorithms[reduction_alg]
        self.n_components = n_components
        self._reducer = reduction_alg(n_components=n_components, **kwargs)
        self._is_fit = False

    @staticmethod
    def _apply_flat(f, acts):
        acts = np.asarray(acts)
        result = f(acts.reshape(-1, acts.shape[-1]))
        if not isinstance(result, np.ndarray):
            return result
        return result.reshape(*acts.shape[:-1], -1)

    def fit(self, acts):
        self._is_fit = True
        return self._apply_flat(self._reducer.fit, acts)

    def fit_transform(self, acts):
        self._is_fit = True
        return self._apply_flat(self._reducer.fit_transform, acts)

    def transform(self, acts):
        return self._apply_flat(self._reducer.transform, acts)

    def __call__(self, acts):
        return self.transform(acts) if self._is_fit else self.fit_transform(acts)

    def __getattr__(self, name: str):
        # only called when normal lookup fails: expose the estimator's fitted `name_` attributes
        reducer = self.__dict__.get("_reducer")
        if reducer is not None and name + "_" in reducer.__dict__:
            return reducer.__dict__[name + "_"]
        raise AttributeError(f"ChannelReducer has no attribute {name!r}")

    def __dir__(self):
        fitted = [n[:-1] for n in dir(self._reducer) if n.endswith("_") and not n.startswith("_")]
        return sorted(set(super().__dir__()) | set(fitted))
