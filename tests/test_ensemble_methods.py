"""Ensemble methods against direct computations, nested scoring, and the estimator contract.

Every input is synthetic: member probabilities are softmaxes of noisy logits
around the true class (fixed seeds), or small hand-built arrays whose right
answer can be worked out on paper. Nothing here trains a model.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.metrics import log_loss as sk_log_loss

from ensemblecv.ensemble import (
    EnsembleSelection,
    GeometricMean,
    HardVoting,
    SoftVoting,
    Stacking,
    WeightedAverage,
    get_method,
    list_methods,
    nested_oof,
)
from ensemblecv.ensemble.metrics import METRICS, get_metric
from ensemblecv.errors import EnsembleCVError

M, N, C = 5, 300, 4
METRIC_NAMES = ["accuracy", "balanced_accuracy", "log_loss"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _data(n: int = N, c: int = C, m: int = M, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """M members from weak (signal 0.3) to good (2.0); every class present in ``y``."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c)
    probas = []
    for signal in np.linspace(0.3, 2.0, m):
        logits = rng.normal(size=(n, c))
        logits[np.arange(n), y] += signal
        probas.append(_softmax(logits))
    return probas, y


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def data() -> tuple[list[np.ndarray], np.ndarray]:
    return _data()


def _score(metric: str, y, proba) -> float:
    return get_metric(metric)(y, proba)


def _best_single(metric: str, probas, y) -> float:
    scores = [_score(metric, y, p) for p in probas]
    return max(scores) if get_metric(metric).greater_is_better else min(scores)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 200)
    proba = rng.dirichlet(np.ones(5), 200)
    assert METRICS["accuracy"](y, proba) == pytest.approx(
        accuracy_score(y, proba.argmax(1)), abs=1e-12
    )
    assert METRICS["balanced_accuracy"](y, proba) == pytest.approx(
        balanced_accuracy_score(y, proba.argmax(1)), abs=1e-12
    )
    assert METRICS["log_loss"](y, proba) == pytest.approx(
        sk_log_loss(y, proba, labels=range(5)), rel=1e-10
    )


def test_metrics_with_a_class_missing_from_y_equal_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 150)  # class 3 of 4 never occurs, but may be predicted
    proba = rng.dirichlet(np.ones(4), 150)
    assert (proba.argmax(1) == 3).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred has a class y_true lacks
        expected = balanced_accuracy_score(y, proba.argmax(1))
    assert METRICS["balanced_accuracy"](y, proba) == pytest.approx(expected, abs=1e-12)
    assert METRICS["log_loss"](y, proba) == pytest.approx(
        sk_log_loss(y, proba, labels=range(4)), rel=1e-10
    )


def test_log_loss_renormalises_rows():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 50)
    proba = rng.dirichlet(np.ones(3), 50)
    assert METRICS["log_loss"](y, 7.0 * proba) == pytest.approx(
        METRICS["log_loss"](y, proba), rel=1e-12
    )


def test_metric_directions_and_unknown_metric():
    assert METRICS["accuracy"].greater_is_better and METRICS["balanced_accuracy"].greater_is_better
    assert not METRICS["log_loss"].greater_is_better
    with pytest.raises(
        EnsembleCVError, match=r"Unknown metric 'logloss'\. Did you mean log_loss\?"
    ):
        get_metric("logloss")


# ---------------------------------------------------------------- voting and averaging


def test_soft_voting_is_the_mean(data):
    probas, y = data
    got = SoftVoting().fit(probas, y).predict_proba(probas)
    np.testing.assert_allclose(got, np.mean(probas, axis=0), rtol=1e-12)


def test_soft_voting_weights_are_np_average(data):
    probas, y = data
    weights = [3.0, 0.0, 1.0, 2.0, 4.0]
    est = SoftVoting(weights=weights).fit(probas, y)
    np.testing.assert_allclose(est.weights_, np.array(weights) / 10.0)
    np.testing.assert_allclose(
        est.predict_proba(probas), np.average(probas, axis=0, weights=weights), rtol=1e-12
    )


@pytest.mark.parametrize(
    "weights", [[1.0, 2.0], [1, 1, 1, 1, 1, 1], [1, -1, 1, 1, 1], [0, 0, 0, 0, 0]]
)
def test_soft_voting_bad_weights(data, weights):
    probas, y = data
    with pytest.raises(
        EnsembleCVError, match=r"weights must be 5 non-negative numbers \(one per member\)"
    ):
        SoftVoting(weights=weights).fit(probas, y)


def test_hard_voting_is_the_majority_vote(data):
    probas, y = data
    stacked = np.stack(probas)
    votes = np.stack([np.bincount(col, minlength=C) for col in stacked.argmax(2).T])  # (N, C)
    mean = stacked.mean(0)
    tied = votes == votes.max(1, keepdims=True)
    # Unique majority: that class. Tie: the tied class with the highest mean probability.
    expected = np.where(tied, mean, -np.inf).argmax(1)
    assert (tied.sum(1) > 1).any() and (tied.sum(1) == 1).any()  # both cases occur
    got = HardVoting().fit(probas, y).predict(probas)
    np.testing.assert_array_equal(got, expected)
    unique = tied.sum(1) == 1
    np.testing.assert_array_equal(got[unique], votes.argmax(1)[unique])


def test_hard_voting_proba_is_vote_share(data):
    probas, y = data
    stacked = np.stack(probas)
    votes = np.stack([np.bincount(col, minlength=C) for col in stacked.argmax(2).T]) / M
    got = HardVoting().fit(probas, y).predict_proba(probas)
    np.testing.assert_allclose(got, votes, atol=1e-5)


def test_geometric_mean_is_normalised_exp_mean_log(data):
    probas, y = data
    geo = np.exp(np.mean(np.log(np.stack(probas)), axis=0))
    expected = geo / geo.sum(1, keepdims=True)
    got = GeometricMean().fit(probas, y).predict_proba(probas)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_geometric_mean_survives_zero_probabilities():
    y = np.array([0, 1])
    probas = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.4], [0.3, 0.7]])]
    got = GeometricMean().fit(probas, y).predict_proba(probas)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(1), 1.0)
    np.testing.assert_array_equal(got.argmax(1), y)


# ---------------------------------------------------------------- ensemble selection


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_selection_weights_are_on_the_simplex(data, metric):
    probas, y = data
    est = EnsembleSelection(n_iterations=20, metric=metric).fit(probas, y)
    assert est.weights_.shape == (M,)
    assert (est.weights_ >= 0).all()
    assert est.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    counts = np.bincount(est.indices_, minlength=M)
    np.testing.assert_allclose(est.weights_, counts / counts.sum())
    assert len(est.indices_) == est.best_iteration_ + 1
    assert len(est.trajectory_) == 20


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_selection_weights_reproduce_the_trajectory(data, metric):
    probas, y = data
    est = EnsembleSelection(n_iterations=20, metric=metric).fit(probas, y)
    traj = est.trajectory_
    best = traj.max() if get_metric(metric).greater_is_better else traj.min()
    assert traj[est.best_iteration_] == best
    assert est.best_iteration_ == int(
        np.flatnonzero(traj == best)[0]
    )  # first (shortest) best prefix
    # Scores are rounded to 1e-6 after the first iteration (as AutoGluon does).
    assert _score(metric, y, est.predict_proba(probas)) == pytest.approx(
        traj[est.best_iteration_], abs=1e-6
    )


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_every_prefix_of_the_trajectory_is_reproduced(data, metric):
    """Stopping after k iterations gives the first k scores and weights scoring the best of them."""
    probas, y = data
    full = EnsembleSelection(n_iterations=12, metric=metric).fit(probas, y).trajectory_
    pick = max if get_metric(metric).greater_is_better else min
    for k in range(1, 13):
        est = EnsembleSelection(n_iterations=k, metric=metric).fit(probas, y)
        np.testing.assert_array_equal(est.trajectory_, full[:k])
        assert _score(metric, y, est.predict_proba(probas)) == pytest.approx(
            pick(full[:k]), abs=1e-6
        )


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_selection_starts_from_the_best_single_member(data, metric):
    probas, y = data
    est = EnsembleSelection(n_iterations=5, metric=metric).fit(probas, y)
    assert est.trajectory_[0] == pytest.approx(_best_single(metric, probas, y), abs=1e-6)


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_selection_is_deterministic(data, metric):
    probas, y = data
    a = EnsembleSelection(n_iterations=15, metric=metric).fit(probas, y)
    b = EnsembleSelection(n_iterations=15, metric=metric).fit(probas, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.trajectory_, b.trajectory_)
    assert a.indices_ == b.indices_


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_duplicate_member_never_displaces_the_lower_index(data, metric):
    probas, y = data
    best = int(np.argmin([_score("log_loss", y, p) for p in probas]))
    dup = probas + [probas[best].copy()]
    plain = EnsembleSelection(n_iterations=15, metric=metric).fit(probas, y)
    with_dup = EnsembleSelection(n_iterations=15, metric=metric).fit(dup, y)
    assert with_dup.weights_[M] == 0.0
    np.testing.assert_array_equal(with_dup.weights_[:M], plain.weights_)
    np.testing.assert_array_equal(with_dup.trajectory_, plain.trajectory_)


def test_identical_first_choices_go_to_the_lower_index():
    y = np.array([0, 1, 0, 1])
    good = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    weak = np.array([[0.4, 0.6], [0.5, 0.5], [0.6, 0.4], [0.5, 0.5]])
    est = EnsembleSelection(n_iterations=3, metric="accuracy").fit([weak, good, good.copy()], y)
    np.testing.assert_array_equal(est.weights_, [0.0, 1.0, 0.0])


def _tie_case() -> tuple[list[np.ndarray], np.ndarray]:
    """Members [U, A, B] where a tie at iteration 2 decides the outcome (worked out by hand).

    U is uniform (never changes an argmax), A the best member (0.8 accuracy), B
    weaker (0.6). After A, adding U, A or B all give 0.8: a three-way tie. If the
    tie goes to the already selected A, then 2A + B is right on every row (1.0);
    if it went to the lowest index U, A + U + B scores like A + B (0.8) and the
    search would stay at [A]. Each row type comes once per class (mirrored).
    """
    rows = [  # (A, B) probabilities of class 0 for a row whose label is 0
        (0.9, 0.9),
        (0.9, 0.9),  # both right
        (0.45, 0.7),  # A wrong by 0.1, B right by 0.4: A+B right, 2A+B right
        (0.6, 0.35),  # A right by 0.2, B wrong by 0.3: A+B wrong, 2A+B right
        (0.9, 0.45),  # A right by 0.8, B wrong by 0.1: A+B right
    ]
    a, b, y = [], [], []
    for label in (0, 1):
        for pa, pb in rows:
            a.append([pa, 1 - pa] if label == 0 else [1 - pa, pa])
            b.append([pb, 1 - pb] if label == 0 else [1 - pb, pb])
            y.append(label)
    a, b = np.array(a), np.array(b)
    return [np.full_like(a, 0.5), a, b], np.array(y)


def test_ties_prefer_an_already_selected_member():
    probas, y = _tie_case()
    assert [_score("accuracy", y, p) for p in probas] == [0.5, 0.8, 0.6]
    est = EnsembleSelection(n_iterations=4, metric="accuracy").fit(probas, y)
    np.testing.assert_allclose(est.trajectory_, [0.8, 0.8, 1.0, 1.0])
    assert est.indices_ == [1, 1, 2]
    np.testing.assert_allclose(est.weights_, [0.0, 2 / 3, 1 / 3])
    assert _score("accuracy", y, est.predict_proba(probas)) == 1.0


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_array_input_equals_list_input(data, metric):
    probas, y = data
    from_list = EnsembleSelection(n_iterations=10, metric=metric).fit(probas, y)
    from_array = EnsembleSelection(n_iterations=10, metric=metric).fit(np.stack(probas), y)
    np.testing.assert_array_equal(from_list.weights_, from_array.weights_)
    np.testing.assert_array_equal(from_list.trajectory_, from_array.trajectory_)
    np.testing.assert_allclose(
        from_list.predict_proba(np.stack(probas)), from_array.predict_proba(probas)
    )


def test_float32_input_matches_float64(data):
    probas, y = data
    f64 = EnsembleSelection(n_iterations=10, metric="log_loss").fit(probas, y)
    f32 = EnsembleSelection(n_iterations=10, metric="log_loss").fit(
        [p.astype(np.float32) for p in probas], y
    )
    np.testing.assert_allclose(f32.trajectory_, f64.trajectory_, atol=2e-6)


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_bagged_selection(data, metric):
    probas, y = data
    a = EnsembleSelection(n_iterations=8, metric=metric, bagging=4, random_state=7).fit(probas, y)
    b = EnsembleSelection(n_iterations=8, metric=metric, bagging=4, random_state=7).fit(probas, y)
    assert a.weights_.shape == (M,) and (a.weights_ >= 0).all()
    assert a.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.trajectory_, b.trajectory_)
    assert len(a.trajectory_) == 4
    # trajectory_ holds the score of the running bag average; the last one is the fitted ensemble.
    assert _score(metric, y, a.predict_proba(probas)) == pytest.approx(a.trajectory_[-1], abs=1e-12)


def _complementary(n_per_class: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """C=4 members; member m is confident and right on class m only.

    On its own class it gives 0.7 to the truth; elsewhere 0.3 to the truth and
    0.4 to the next class (the same wrong class for every member). Each member
    alone is right on a quarter of the rows; the mean of all four is right on
    every row (1.6 vs at most 1.2). Noise of at most ±0.02 per entry cannot
    change any of these argmaxes, so the outcome is fixed by construction.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(4), n_per_class))
    probas = []
    for m in range(4):
        p = np.zeros((len(y), 4))
        for i, label in enumerate(y):
            if label == m:
                p[i] = 0.1
                p[i, label] = 0.7
            else:
                p[i] = 0.15
                p[i, label] = 0.3
                p[i, (label + 1) % 4] = 0.4
        p += rng.uniform(-0.02, 0.02, p.shape)
        probas.append(p / p.sum(1, keepdims=True))
    return probas, y


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_selection_beats_the_best_member_on_held_out_data(metric):
    train, y_train = _complementary(40, seed=0)
    test, y_test = _complementary(25, seed=1)
    est = EnsembleSelection(n_iterations=10, metric=metric).fit(train, y_train)
    assert (est.weights_ > 0).sum() == 4
    singles = [_score("accuracy", y_test, p) for p in test]
    assert max(singles) == 0.25
    assert _score("accuracy", y_test, est.predict_proba(test)) == 1.0


def test_selection_input_errors(data):
    probas, y = data
    with pytest.raises(EnsembleCVError, match=r"Unknown metric 'auc'"):
        EnsembleSelection(metric="auc").fit(probas, y)
    with pytest.raises(EnsembleCVError, match="n_iterations must be at least 1"):
        EnsembleSelection(n_iterations=0).fit(probas, y)
    with pytest.raises(EnsembleCVError, match=r"y has shape \(299,\), expected \(300,\)"):
        EnsembleSelection().fit(probas, y[:-1])
    with pytest.raises(EnsembleCVError, match=r"y must hold integer class indices in 0\.\.3"):
        EnsembleSelection().fit(probas, y.astype(float))
    with pytest.raises(EnsembleCVError, match=r"y must hold integer class indices in 0\.\.3"):
        EnsembleSelection().fit(probas, np.where(y == 0, 4, y))
    with pytest.raises(EnsembleCVError, match=r"members \[2\] differ"):
        EnsembleSelection().fit([probas[0], probas[1], probas[2][:10]], y)
    with pytest.raises(EnsembleCVError, match="at least one member"):
        EnsembleSelection().fit([], y)


def test_single_member_selection(data):
    probas, y = data
    est = EnsembleSelection(n_iterations=10, metric="log_loss").fit(probas[:1], y)
    np.testing.assert_array_equal(est.weights_, [1.0])
    np.testing.assert_allclose(est.predict_proba(probas[:1]), probas[0])


# ---------------------------------------------------------------- weighted average


def test_weighted_average_log_loss_beats_members_and_equal_weights(data):
    probas, y = data
    est = WeightedAverage(metric="log_loss").fit(probas, y)
    w = est.weights_
    assert w.shape == (M,) and (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    loss = _score("log_loss", y, est.predict_proba(probas))
    assert loss <= min(_score("log_loss", y, p) for p in probas) + 1e-9
    assert loss <= _score("log_loss", y, np.mean(probas, axis=0)) + 1e-9
    np.testing.assert_allclose(
        est.predict_proba(probas), np.average(probas, axis=0, weights=w), rtol=1e-12
    )


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy"])
def test_weighted_average_label_metrics_give_simplex_weights(data, metric):
    probas, y = data
    a = WeightedAverage(metric=metric, max_iter=60).fit(probas, y)
    b = WeightedAverage(metric=metric, max_iter=60).fit(probas, y)
    assert (a.weights_ >= 0).all() and a.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(a.weights_, b.weights_)


# ---------------------------------------------------------------- stacking


def test_stacking_predicts_probabilities_for_every_class(data):
    probas, y = data
    est = Stacking(cv=3).fit(probas, y)
    out = est.predict_proba(probas)
    assert out.shape == (N, C)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-9)


def test_stacking_handles_a_class_missing_from_y(data):
    probas, y = data
    y3 = np.where(y == 3, 0, y)  # class 3 never seen in fit
    out = Stacking(cv=1).fit(probas, y3).predict_proba(probas)
    assert out.shape == (N, C)
    np.testing.assert_array_equal(out[:, 3], 0.0)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-9)


def test_stacking_fits_only_on_what_it_is_given(data):
    """A fit on rows 0..199 does not depend on rows 200..299 (it never sees them)."""
    probas, y = data
    head = [p[:200] for p in probas]
    a = Stacking(cv=1).fit(head, y[:200]).predict_proba(probas)
    scrambled = [np.concatenate([p[:200], p[200:][::-1]]) for p in probas]
    b = Stacking(cv=1).fit([p[:200] for p in scrambled], y[:200]).predict_proba(probas)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_stacking_unknown_meta(data):
    probas, y = data
    with pytest.raises(
        EnsembleCVError, match=r"Stacking meta 'xgboost' is not available; use 'logistic'"
    ):
        Stacking(meta="xgboost").fit(probas, y)


# ---------------------------------------------------------------- nested scoring


def _row_keys(members: list[np.ndarray]) -> set[bytes]:
    return {row.tobytes() for row in np.ascontiguousarray(members[0])}


class _Spy:
    """Logs the rows each fitted copy was fitted on and asked to predict (the class-level log
    survives the deepcopy that ``nested_oof`` makes)."""

    log: list[tuple[set[bytes], set[bytes]]] = []

    def fit(self, probas, y):
        self.fit_rows_ = _row_keys(probas)
        return self

    def predict_proba(self, probas):
        type(self).log.append((self.fit_rows_, _row_keys(probas)))
        return np.full(np.shape(probas[0]), 1.0 / np.shape(probas[0])[1])


def _folds(n: int, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def test_nested_oof_never_fits_on_the_scored_fold(data):
    probas, y = data
    fold_of = _folds(N, k=3)
    _Spy.log = []
    nested_oof(_Spy(), probas, y, fold_of)
    assert len(_Spy.log) == 3
    all_rows = _row_keys(probas)
    assert len(all_rows) == N  # rows are distinguishable
    for k, (fit_rows, scored_rows) in enumerate(_Spy.log):
        fold_rows = _row_keys([probas[0][fold_of == k]])
        assert scored_rows == fold_rows
        assert not fit_rows & scored_rows
        assert fit_rows | scored_rows == all_rows


class _Memorise:
    """1-nearest-neighbour over rows of member probabilities: perfect on rows it has seen."""

    def fit(self, probas, y):
        self.x_ = np.hstack(probas)
        self.y_ = np.asarray(y)
        self.c_ = np.shape(probas[0])[1]
        return self

    def predict_proba(self, probas):
        x = np.hstack(probas)
        nearest = ((x[:, None, :] - self.x_[None, :, :]) ** 2).sum(2).argmin(1)
        return np.eye(self.c_)[self.y_[nearest]]


def test_memorising_method_is_perfect_in_sample_but_not_nested():
    rng = np.random.default_rng(5)
    y = rng.integers(0, C, 240)
    probas = [rng.dirichlet(np.ones(C), 240) for _ in range(3)]  # no information about y
    in_sample = _Memorise().fit(probas, y).predict_proba(probas)
    assert _score("accuracy", y, in_sample) == 1.0
    nested = nested_oof(_Memorise(), probas, y, _folds(240, k=4))
    assert _score("accuracy", y, nested) < 0.4  # chance is 0.25


def test_nested_oof_equals_refits_without_each_fold(data):
    probas, y = data
    fold_of = _folds(N, k=3, seed=1)
    got = nested_oof(EnsembleSelection(n_iterations=8, metric="log_loss"), probas, y, fold_of)
    for k in range(3):
        out = fold_of == k
        est = EnsembleSelection(n_iterations=8, metric="log_loss").fit(
            [p[~out] for p in probas], y[~out]
        )
        np.testing.assert_allclose(
            got[out], est.predict_proba([p[out] for p in probas]), rtol=1e-12
        )


def test_nested_oof_leaves_the_template_unfitted(data):
    probas, y = data
    template = EnsembleSelection(n_iterations=3)
    nested_oof(template, probas, y, _folds(N))
    assert not hasattr(template, "weights_")


# ---------------------------------------------------------------- the estimator contract


@pytest.fixture(params=list_methods())
def method(request):
    return get_method(request.param)


_FITTED: dict[str, tuple] = {}


@pytest.fixture
def fitted(method, data):
    """(estimator, what fit returned, inputs before fit): one default fit per method per session."""
    if method.__name__ not in _FITTED:
        probas, y = data
        before = [p.copy() for p in probas]
        est = method()
        _FITTED[method.__name__] = (est, est.fit(probas, y), before)
    return _FITTED[method.__name__]


def test_every_default_method_is_registered():
    assert set(list_methods()) >= {
        "ensemble_selection",
        "soft_voting",
        "hard_voting",
        "geometric_mean",
        "weighted_average",
        "stacking",
    }
    with pytest.raises(EnsembleCVError, match=r"Did you mean ensemble_selection\?"):
        get_method("ensemble_selektion")


def test_get_params_returns_the_init_args(method):
    est = method()
    signature = inspect.signature(method).parameters
    assert est.get_params() == {k: p.default for k, p in signature.items()}
    assert est.set_params(**est.get_params()) is est
    cloned = clone(est)
    assert type(cloned) is method and cloned.get_params() == est.get_params()


def test_init_does_no_work(method):
    est = method()
    assert not [k for k in vars(est) if k.endswith("_")]


def test_unfitted_predict_proba_raises(method, data):
    probas, _ = data
    with pytest.raises(EnsembleCVError, match=rf"{method.__name__} is not fitted yet"):
        method().predict_proba(probas)


def test_fit_returns_self_and_predict_is_argmax(fitted, data):
    probas, _ = data
    est, returned, before = fitted
    assert returned is est
    for p, b in zip(probas, before):
        np.testing.assert_array_equal(p, b)  # inputs are not modified
    proba = est.predict_proba(probas)
    assert proba.shape == (N, C)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)  # hard voting adds a 1e-6 tie-breaker
    np.testing.assert_array_equal(est.predict(probas), proba.argmax(1))


def test_fitted_state_ends_in_underscore(fitted):
    est = fitted[0]
    params = set(est.get_params())
    learned = {k for k in vars(est) if k not in params}
    assert learned and all(k.endswith("_") for k in learned)
    assert est.get_params() == type(est)().get_params()  # fit leaves the parameters alone


def test_array_and_list_inputs_agree(fitted, method, data):
    probas, y = data
    a = fitted[0].predict_proba(probas)
    b = method().fit(np.stack(probas), y).predict_proba(np.stack(probas))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_wrong_number_of_members_at_predict(fitted, data):
    probas, _ = data
    with pytest.raises(EnsembleCVError, match=r"Fitted with 5 members, got 4"):
        fitted[0].predict_proba(probas[:4])


def test_deepcopy_and_refit_are_independent(fitted, data):
    probas, y = data
    est = fitted[0]
    expected = est.predict_proba(probas)
    other = copy.deepcopy(est).fit([p[:150] for p in probas], y[:150])
    np.testing.assert_array_equal(est.predict_proba(probas), expected)
    assert other.predict_proba(probas).shape == (N, C)


# ---------------------------------------------------------------- known issues (fix proposed)


def test_hard_voting_rows_sum_to_one(data):
    probas, y = data
    proba = HardVoting().fit(probas, y).predict_proba(probas)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-12)


def test_stacking_with_one_class_fails_loudly(data):
    probas, _ = data
    with pytest.raises(EnsembleCVError, match="at least two classes"):
        Stacking().fit(probas, np.zeros(N, dtype=np.int64))
