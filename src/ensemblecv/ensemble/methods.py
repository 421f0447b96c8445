"""Ensemble methods as scikit-learn-style estimators over member probabilities.

Every method takes ``probas`` — a sequence of M arrays of shape (N, C) or one
(M, N, C) array, never copied to float64 as a whole — and integer labels ``y``.
``__init__`` only stores parameters, ``fit`` validates and returns ``self``,
learned state ends in ``_`` (the scikit-learn contract), so methods can be
cloned and re-fitted fold by fold for honest nested scoring.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._registry import Registry
from ..errors import EnsembleCVError
from .metrics import EPS, get_metric

_methods: Registry = Registry("ensemble method")


def list_methods() -> list[str]:
    return _methods.names()


def get_method(name: str) -> type:
    return _methods.get(name)


def as_members(probas) -> list[np.ndarray]:
    """A list of M (N, C) float arrays without copying the caller's data."""
    if isinstance(probas, np.ndarray) and probas.ndim == 3:
        members = list(probas)
    elif isinstance(probas, Sequence) or isinstance(probas, np.ndarray):
        members = [np.asarray(p) for p in probas]
    else:
        raise EnsembleCVError("probas must be a sequence of (N, C) arrays or one (M, N, C) array.")
    if not members:
        raise EnsembleCVError("An ensemble needs at least one member.")
    shape = members[0].shape
    bad = [i for i, p in enumerate(members) if p.ndim != 2 or p.shape != shape]
    if bad:
        raise EnsembleCVError(
            f"All members need the same (N, C) shape as member 0 {shape}; members {bad} differ."
        )
    return members


def _check_y(y, members: list[np.ndarray]) -> np.ndarray:
    y = np.asarray(y)
    n, c = members[0].shape
    if y.shape != (n,):
        raise EnsembleCVError(f"y has shape {y.shape}, expected ({n},) to match the probabilities.")
    if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max(initial=0) >= c:
        raise EnsembleCVError(f"y must hold integer class indices in 0..{c - 1}.")
    return y.astype(np.int64)


def weighted_sum(members: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_m w_m P_m`` in float64, skipping zero weights (no (M, N, C) temporary)."""
    out = np.zeros(members[0].shape, dtype=np.float64)
    for w, p in zip(weights, members):
        if w != 0:
            out += w * p
    return out


class _Ensemble:
    """Shared scikit-learn plumbing: parameters, predict from predict_proba."""

    def get_params(self, deep: bool = True) -> dict:
        import inspect

        params = inspect.signature(type(self)).parameters.values()
        keep = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {p.name: getattr(self, p.name) for p in params if p.kind in keep}

    def set_params(self, **params) -> _Ensemble:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def _check_fitted(self, members: list[np.ndarray]) -> None:
        if not hasattr(self, "n_members_"):
            raise EnsembleCVError(
                f"{type(self).__name__} is not fitted yet; call fit(probas, y) first."
            )
        if len(members) != self.n_members_:
            raise EnsembleCVError(f"Fitted with {self.n_members_} members, got {len(members)}.")

    def predict(self, probas) -> np.ndarray:
        return self.predict_proba(probas).argmax(1)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class _Linear(_Ensemble):
    """Ensembles that are a weighted average of members (``weights_`` sums to 1)."""

    def predict_proba(self, probas) -> np.ndarray:
        members = as_members(probas)
        self._check_fitted(members)
        return weighted_sum(members, self.weights_)


@_methods.register("ensemble_selection")
class EnsembleSelection(_Linear):
    """Greedy forward selection with replacement (Caruana et al., 2004).

    Each iteration adds the member (possibly again) that most improves
    ``metric`` of the running average; the ensemble kept is the best prefix of
    that path, as AutoGluon does. Ties prefer members already selected, then
    the lowest index, so results are deterministic. ``bagging=B > 0`` repeats
    the search on B random halves of the members and averages the weights.

    Attributes: ``weights_`` (M,), ``trajectory_`` (score after each
    iteration; per bag for bagging), ``best_iteration_``, ``indices_``.
    """

    def __init__(
        self,
        n_iterations: int = 50,
        metric: str = "accuracy",
        bagging: int = 0,
        random_state: int | None = 0,
    ) -> None:
        self.n_iterations = n_iterations
        self.metric = metric
        self.bagging = bagging
        self.random_state = random_state

    def fit(self, probas, y) -> EnsembleSelection:
        members = as_members(probas)
        y = _check_y(y, members)
        metric = get_metric(self.metric)
        if int(self.n_iterations) < 1:
            raise EnsembleCVError("n_iterations must be at least 1.")
        self.n_members_ = len(members)
        if not self.bagging:
            order, trajectory = _greedy(members, y, metric, int(self.n_iterations))
            best = _best_prefix(trajectory, metric)
            self.indices_ = order[: best + 1]
            self.trajectory_ = np.asarray(trajectory)
            self.best_iteration_ = best
            self.weights_ = _counts_to_weights(self.indices_, len(members))
            return self
        return self._fit_bagged(members, y, metric)

    def _fit_bagged(self, members: list[np.ndarray], y: np.ndarray, metric) -> EnsembleSelection:
        rng = np.random.default_rng(self.random_state)
        m = len(members)
        size = max(1, int(round(m * 0.5)))
        total = np.zeros(m)
        trajectory, indices = [], []
        for _ in range(int(self.bagging)):
            subset = np.sort(rng.choice(m, size=size, replace=False))
            order, traj = _greedy([members[i] for i in subset], y, metric, int(self.n_iterations))
            chosen = [int(subset[i]) for i in order[: _best_prefix(traj, metric) + 1]]
            indices += chosen
            total += _counts_to_weights(chosen, m)
            trajectory.append(metric(y, weighted_sum(members, total / total.sum())))
        self.indices_ = indices
        self.trajectory_ = np.asarray(trajectory)
        self.best_iteration_ = len(trajectory) - 1
        self.weights_ = total / total.sum()
        return self


def _counts_to_weights(indices: list[int], m: int) -> np.ndarray:
    weights = np.zeros(m)
    for i, c in Counter(indices).items():
        weights[i] = c
    return weights / weights.sum()


def _best_prefix(trajectory: list[float], metric) -> int:
    """Index of the first best score (shortest ensemble reaching it)."""
    values = np.asarray(trajectory)
    target = values.max() if metric.greater_is_better else values.min()
    return int(np.flatnonzero(values == target)[0])


def _label_scores(members, y, metric, running: np.ndarray) -> np.ndarray:
    """Score of ``running + P_m`` for every member m (argmax ignores the 1/(k+1) factor)."""
    scores = np.empty(len(members))
    for j, member in enumerate(members):
        scores[j] = metric(y, running + member)
    return scores


def _greedy(
    members: list[np.ndarray], y: np.ndarray, metric, n_iterations: int
) -> tuple[list[int], list[float]]:
    """Caruana's forward selection; returns the picks and the score after each pick.

    Log loss needs only each row's true-class probability and row sum, so the
    search keeps two length-N running vectors and costs O(M·N) per step
    instead of O(M·N·C); label metrics need the full running sum for argmax.
    """
    n = len(y)
    log_loss = metric.name == "log_loss"
    if log_loss:
        true_p = np.stack([np.asarray(p[np.arange(n), y], dtype=np.float64) for p in members])
        rowsum = np.stack([np.asarray(p, dtype=np.float64).sum(1) for p in members])
        run_true, run_sum = np.zeros(n), np.zeros(n)
    else:
        running = np.zeros(members[0].shape, dtype=np.float64)
    order: list[int] = []
    trajectory: list[float] = []
    round_scores = False
    for it in range(n_iterations):
        if log_loss:
            p = (run_true[None, :] + true_p) / np.maximum(run_sum[None, :] + rowsum, EPS)
            scores = -np.log(np.clip(p, EPS, 1.0)).mean(1)
        else:
            scores = _label_scores(members, y, metric, running)
        scores = np.where(
            np.isfinite(scores), scores, -np.inf if metric.greater_is_better else np.inf
        )
        if round_scores:
            # Rounding to 1e-6 keeps float noise from adding a near-identical member.
            scores = scores.round(6)
        best_value = scores.max() if metric.greater_is_better else scores.min()
        ties = np.flatnonzero(np.isclose(scores, best_value, atol=0, rtol=1e-12))
        used = [t for t in ties if t in set(order)]
        best = int((used or ties)[0])
        score = float(scores[best])
        regret = 1.0 - score if metric.greater_is_better else score  # AutoGluon's trigger
        if it == 0 and abs(regret) > 1e-4:
            round_scores, score = True, round(score, 6)
        order.append(best)
        trajectory.append(score)
        if log_loss:
            run_true += true_p[best]
            run_sum += rowsum[best]
        else:
            running += members[best]
        if len(members) == 1:
            break
    return order, trajectory


@_methods.register("soft_voting")
class SoftVoting(_Linear):
    """(Weighted) mean of member probabilities; ``weights=None`` means equal weights."""

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        self.weights = weights

    def fit(self, probas, y=None) -> SoftVoting:
        members = as_members(probas)
        self.n_members_ = len(members)
        if self.weights is None:
            w = np.ones(len(members))
        else:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
                raise EnsembleCVError(
                    f"weights must be {len(members)} non-negative numbers (one per member) with a "
                    f"positive sum; got {list(self.weights)}."
                )
        self.weights_ = w / w.sum()
        return self


class _FixedRule(_Ensemble):
    """Rules with nothing to learn: ``fit`` only records the member count (checked later)."""

    def fit(self, probas, y=None):
        self.n_members_ = len(as_members(probas))
        return self


@_methods.register("hard_voting")
class HardVoting(_FixedRule):
    """Majority vote of member predictions; ties go to the highest mean probability."""

    def predict_proba(self, probas) -> np.ndarray:
        """Vote shares, with a tiny mean-probability term that only breaks ties."""
        members = as_members(probas)
        self._check_fitted(members)
        n, c = members[0].shape
        votes = np.zeros((n, c))
        mean = np.zeros((n, c))
        for p in members:
            votes[np.arange(n), p.argmax(1)] += 1
            mean += p
        out = votes / len(members) + 1e-6 * mean / len(members)
        return out / out.sum(1, keepdims=True)


@_methods.register("geometric_mean")
class GeometricMean(_FixedRule):
    """Normalised geometric mean: rewards agreement, punishes a confident dissent."""

    def predict_proba(self, probas) -> np.ndarray:
        members = as_members(probas)
        self._check_fitted(members)
        log_sum = np.zeros(members[0].shape)
        for p in members:
            log_sum += np.log(np.clip(p, EPS, 1.0))
        log_mean = log_sum / len(members)
        log_mean -= log_mean.max(1, keepdims=True)
        out = np.exp(log_mean)
        return out / out.sum(1, keepdims=True)


@_methods.register("weighted_average")
class WeightedAverage(_Linear):
    """Weights on the simplex that optimise ``metric`` on the given (out-of-fold) data.

    Log loss is smooth, so it is minimised directly (softmax-parametrised
    L-BFGS); accuracy-type metrics start there and refine by Nelder-Mead.
    """

    def __init__(self, metric: str = "log_loss", max_iter: int = 200) -> None:
        self.metric = metric
        self.max_iter = max_iter

    def fit(self, probas, y) -> WeightedAverage:
        from scipy.optimize import minimize

        members = as_members(probas)
        y = _check_y(y, members)
        metric = get_metric(self.metric)
        self.n_members_ = len(members)
        n = len(y)
        true_p = np.stack([np.asarray(p[np.arange(n), y], dtype=np.float64) for p in members])

        def softmax(z):
            e = np.exp(z - z.max())
            return e / e.sum()

        def nll(z):
            w = softmax(z)
            p = np.clip(w @ true_p, EPS, None)
            grad_w = -(true_p / p).mean(1)
            return -np.log(p).mean(), w * (grad_w - w @ grad_w)

        res = minimize(
            nll,
            np.zeros(len(members)),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(self.max_iter)},
        )
        z = res.x
        if metric.name != "log_loss":
            # Label metrics are step functions: refine from both the log-loss optimum
            # and equal weights, keep the better (Nelder-Mead is local).
            sign = -1.0 if metric.greater_is_better else 1.0

            def objective(v):
                return sign * metric(y, weighted_sum(members, softmax(v)))

            starts = [np.clip(z, z.max() - 4.0, None), np.zeros(len(members))]
            simplex = np.eye(len(members))  # unit steps: scipy's default 5 % of 0 never moves
            results = [
                minimize(
                    objective,
                    s,
                    method="Nelder-Mead",
                    options={
                        "maxiter": int(self.max_iter),
                        "xatol": 1e-3,
                        "initial_simplex": np.vstack([s, s + simplex]),
                    },
                )
                for s in starts
            ]
            z = min(results, key=lambda r: r.fun).x
        w = softmax(z)
        w[w < 1e-4] = 0.0  # members that contribute nothing are dropped from the spec
        self.weights_ = w / w.sum()
        return self


@_methods.register("stacking")
class Stacking(_Ensemble):
    """A meta-classifier over member log-probabilities, trained on out-of-fold inputs only.

    The inputs passed to ``fit`` must themselves be out-of-fold predictions
    (as the prediction store provides); the leaderboard scores stacking with
    nested folds, so the meta-learner never sees the rows it is scored on.
    ``cv`` sets the folds of the meta-learner's own regularisation search.
    """

    def __init__(self, meta: str = "logistic", cv: int = 5, random_state: int | None = 0) -> None:
        self.meta = meta
        self.cv = cv
        self.random_state = random_state

    @staticmethod
    def _features(members: list[np.ndarray]) -> np.ndarray:
        return np.hstack(
            [np.log(np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0)) for p in members]
        )

    def fit(self, probas, y) -> Stacking:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        members = as_members(probas)
        y = _check_y(y, members)
        if self.meta != "logistic":
            raise EnsembleCVError(f"Stacking meta {self.meta!r} is not available; use 'logistic'.")
        if np.unique(y).size < 2:
            raise EnsembleCVError(
                f"Stacking needs at least two classes in y to fit its meta-learner; got only class {int(y[0])}."
            )
        self.n_members_ = len(members)
        self.n_classes_ = members[0].shape[1]
        x = self._features(members)
        min_count = np.bincount(y).min(initial=0) if len(y) else 0
        # Standardised log-probabilities make L-BFGS converge in tens of iterations
        # instead of hitting its limit (and taking seconds per fit) on raw logs.
        if int(self.cv) >= 2 and min_count >= int(self.cv):
            meta = LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], cv=int(self.cv), max_iter=300)
        else:
            meta = LogisticRegression(C=0.1, max_iter=300)
        self.meta_ = make_pipeline(StandardScaler(), meta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.meta_.fit(x, y)
        return self

    def predict_proba(self, probas) -> np.ndarray:
        members = as_members(probas)
        self._check_fitted(members)
        out = np.zeros((members[0].shape[0], self.n_classes_))
        out[:, self.meta_.classes_] = self.meta_.predict_proba(self._features(members))
        return out
