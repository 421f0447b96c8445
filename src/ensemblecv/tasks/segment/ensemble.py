"""Map ensembles: (weighted) arithmetic and geometric means of OOF probability maps, scored nested.

Members are runs (and their ``+tta`` variants: a flip / multi-scale TTA map
is a member of its own). Estimators follow the project's contract
(``fit(maps, truth)`` returns self, learned ``weights_``, ``predict_proba``):
``maps`` is a list of (N, K, s, s) probability arrays, ``truth`` (N, s, s)
class ids with ``ignore_index``. Weights are chosen on the stored maps by
Caruana's greedy forward selection with replacement on dataset-level mIoU
(as :class:`ensemblecv.ensemble.EnsembleSelection`, whose tie rules it
keeps); the geometric variants average log-probabilities.

Every method's CV score is nested, as for classification
(:func:`ensemblecv.ensemble.nested_oof`): for each fold k it is fitted on
the other folds' maps and predicts fold k. Only the fold's confusion matrix
is kept, so no second copy of all maps is held, and the score is taken at
each image's own size from the stored maps, exactly as single runs are
scored — the leaderboard compares like with like.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..._registry import Registry
from ...errors import EnsembleCVError
from .metrics import confusion, scores_from_confusion
from .store import decode, open_maps, resize_probs

_EPS = 1e-4
_MAP_METHODS: Registry[type] = Registry("map ensemble method")


def list_map_methods() -> list[str]:
    return _MAP_METHODS.names()


def _combine(maps: list[np.ndarray], weights: np.ndarray, geometric: bool) -> np.ndarray:
    out = np.zeros(maps[0].shape, np.float32)
    for m, w in zip(maps, weights):
        if w:
            out += np.float32(w) * (np.log(np.asarray(m, np.float32) + _EPS) if geometric else m)
    if geometric:
        out -= out.max(axis=1, keepdims=True)
        out = np.exp(out)
        out /= out.sum(axis=1, keepdims=True)
    return out


class _MapEnsemble:
    geometric = False

    def get_params(self, deep: bool = True) -> dict:
        return (
            dict(vars(self))
            if not deep
            else {k: v for k, v in vars(self).items() if not k.endswith("_")}
        )

    def _check(self, maps) -> list[np.ndarray]:
        maps = list(maps)
        if not maps or any(m.shape != maps[0].shape for m in maps):
            raise EnsembleCVError("Map ensembles need members of one shape (N, K, s, s).")
        return maps

    def predict_proba(self, maps) -> np.ndarray:
        maps = self._check(maps)
        if len(maps) != len(self.weights_):
            raise EnsembleCVError(f"fitted on {len(self.weights_)} members, got {len(maps)}.")
        return _combine(maps, self.weights_, self.geometric)


@_MAP_METHODS.register("map_mean")
class MapMean(_MapEnsemble):
    """Arithmetic mean of the members' maps (``weights``: fixed, default equal)."""

    def __init__(self, weights=None) -> None:
        self.weights = weights

    def fit(self, maps, truth=None, ignore_index: int = 255):
        maps = self._check(maps)
        w = np.ones(len(maps)) if self.weights is None else np.asarray(self.weights, float)
        if len(w) != len(maps) or (w < 0).any() or w.sum() <= 0:
            raise EnsembleCVError(f"weights {list(w)} do not fit {len(maps)} members.")
        self.weights_ = w / w.sum()
        return self


@_MAP_METHODS.register("map_geometric")
class MapGeometricMean(MapMean):
    """Geometric mean (mean log-probability, renormalised): a member sure a class is absent vetoes it."""

    geometric = True


def _miou(truth: np.ndarray, probs: np.ndarray, k: int, ignore_index: int) -> float:
    score = scores_from_confusion(confusion(truth, probs.argmax(1), k, ignore_index))["miou"]
    return float(score) if np.isfinite(score) else 0.0


@_MAP_METHODS.register("map_greedy")
class MapGreedy(_MapEnsemble):
    """Caruana's forward selection with replacement on mIoU; the best prefix is kept.

    Attributes: ``weights_`` (M,), ``indices_`` (the picks), ``trajectory_``.
    """

    def __init__(self, n_iterations: int = 15) -> None:
        self.n_iterations = n_iterations

    def fit(self, maps, truth, ignore_index: int = 255):
        maps = self._check(maps)
        k = maps[0].shape[1]
        terms = [np.log(np.asarray(m, np.float32) + _EPS) if self.geometric else m for m in maps]
        running = np.zeros(maps[0].shape, np.float32)
        order: list[int] = []
        trajectory: list[float] = []
        for _ in range(int(self.n_iterations)):
            scores = np.array([_miou(truth, running + t, k, ignore_index) for t in terms])
            best_value = scores.max()
            ties = [
                int(j) for j in np.flatnonzero(np.isclose(scores, best_value, rtol=0, atol=1e-9))
            ]
            used = [t for t in ties if t in set(order)]
            pick = (used or ties)[0]
            order.append(pick)
            trajectory.append(float(best_value))
            running += terms[pick]
            if len(maps) == 1:
                break
        best = int(np.flatnonzero(np.asarray(trajectory) == max(trajectory))[0])
        self.indices_ = order[: best + 1]
        self.trajectory_ = np.asarray(trajectory)
        counts = Counter(self.indices_)
        w = np.array([counts.get(i, 0) for i in range(len(maps))], float)
        self.weights_ = w / w.sum()
        return self


@_MAP_METHODS.register("map_greedy_geometric")
class MapGreedyGeometric(MapGreedy):
    """:class:`MapGreedy` on log-probabilities: a weighted geometric mean."""

    geometric = True


DEFAULT_MAP_METHODS = ["map_greedy", "map_greedy_geometric", "map_mean", "map_geometric"]


# ----------------------------------------------------------------- the store side


class MapStore:
    """Every finished run's OOF (and test) maps of a workspace, aligned by sample id.

    ``maps[name]``: (N, K, s, s) float32 probabilities in workspace sample order,
    all at the largest side among the runs; ``test[name]``: the fold models' mean.
    """

    def __init__(self, root: Path, runs: list[str] | None = None) -> None:
        from ...data.samples import load_classes
        from .workspace import workspace_meta

        self.root = Path(root)
        self.classes = load_classes(self.root / "classes.json")
        self.ignore_index, self.palette = workspace_meta(self.root)
        folds = pd.read_parquet(self.root / "folds.parquet")
        self.n_folds = int(folds["fold"].max()) + 1
        self.samples = pd.read_parquet(self.root / "samples.parquet")
        self.fold_of = folds["fold"].to_numpy()
        found = self._runs(runs)
        if not found:
            raise EnsembleCVError(
                f"No finished segmentation runs in {self.root}; run `ensemblecv train` first."
            )
        raw = {name: self._load(run, suffix, "oof") for name, (run, suffix) in found.items()}
        self.side = max(m.shape[-1] for m in raw.values())
        self.maps = {n: _to_side(m, self.side) for n, m in raw.items()}
        self.test = {}
        self.test_ids = None
        for name, (run, suffix) in found.items():
            test = self._load(run, suffix, "test")
            if test is not None:
                self.test[name] = _to_side(test, self.side)
        self.names = list(found)

    def _runs(self, runs) -> dict[str, tuple[str, str]]:
        out = {}
        for run_dir in sorted((self.root / "runs").glob("*")):
            dirs = [run_dir / f"fold_{k}" for k in range(self.n_folds)]
            if not all(
                (d / "done.json").is_file() and (d / "oof_maps.npy").is_file() for d in dirs
            ):
                continue
            out[run_dir.name] = (run_dir.name, "")
            if all((d / "oof_maps_tta.npy").is_file() for d in dirs):
                out[f"{run_dir.name}+tta"] = (run_dir.name, "_tta")
        if runs:
            missing = [r for r in runs if r not in out]
            if missing:
                raise EnsembleCVError(
                    f"No finished segmentation run(s) {missing} in {self.root}; "
                    f"finished: {', '.join(out) or 'none'}."
                )
            out = {r: out[r] for r in runs}
        return out

    def _load(self, run: str, suffix: str, prefix: str) -> np.ndarray | None:
        run_dir = self.root / "runs" / run
        if prefix == "test":
            files = [run_dir / f"fold_{k}" / f"test_maps{suffix}.npy" for k in range(self.n_folds)]
            if not all(f.is_file() for f in files):
                return None
            ids = pd.read_parquet(run_dir / "fold_0" / "test_samples.parquet")["sample_id"]
            if self.test_ids is None:
                self.test_ids = ids.astype(str).to_numpy()
                self.test_sizes = pd.read_parquet(run_dir / "fold_0" / "test_samples.parquet")
            total = None
            for f in files:
                d = decode(open_maps(f))
                total = d if total is None else total + d
            return total / len(files)
        where = {sid: i for i, sid in enumerate(self.samples["sample_id"].astype(str))}
        out = None
        for k in range(self.n_folds):
            d = run_dir / f"fold_{k}"
            ids = pd.read_parquet(d / "oof_samples.parquet")["sample_id"].astype(str)
            maps = open_maps(d / f"oof_maps{suffix}.npy")
            if out is None:
                out = np.zeros((len(self.samples), *maps.shape[1:]), np.float32)
            out[[where[s] for s in ids]] = decode(maps)
        return out

    def truth(self, side: int) -> np.ndarray:
        """Every workspace mask, nearest-resized to (side, side), (N, side, side) uint8."""
        import cv2

        out = np.empty((len(self.samples), side, side), np.uint8)
        for i, m in enumerate(self.masks()):
            out[i] = cv2.resize(m, (side, side), interpolation=cv2.INTER_NEAREST)
        return out

    def masks(self, test: bool = False):
        from .data import read_mask

        paths = self.samples["mask_path"] if not test else self.test_mask_paths
        for p in paths:
            yield read_mask(str(p), self.palette, self.ignore_index)


def _to_side(maps: np.ndarray, side: int) -> np.ndarray:
    if maps.shape[-1] == side:
        return maps
    t = torch.from_numpy(np.ascontiguousarray(maps))
    return torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear").numpy()


def full_confusion(probs: np.ndarray, masks, k: int, ignore_index: int) -> np.ndarray:
    """Confusion of stored-resolution maps resized to each mask's own size."""
    cm = np.zeros((k, k), np.int64)
    for p, m in zip(probs, masks):
        pred = resize_probs(p, *m.shape).argmax(0).numpy()
        cm += confusion(m, pred, k, ignore_index)
    return cm


def nested_map_confusion(method, maps, truth, fold_of, masks, k, ignore_index) -> np.ndarray:
    """Fold k's maps predicted by ``method`` fitted without fold k; their pooled full-size confusion."""
    cm = np.zeros((k, k), np.int64)
    for fold in np.unique(fold_of):
        inner, outer = fold_of != fold, fold_of == fold
        est = copy.deepcopy(method).fit([m[inner] for m in maps], truth[inner], ignore_index)
        pred = est.predict_proba([m[outer] for m in maps])
        cm += full_confusion(pred, [masks[i] for i in np.flatnonzero(outer)], k, ignore_index)
    return cm


def _row(name, kind, method, members, weights, cm, extra=None) -> dict:
    s = scores_from_confusion(cm)
    return {
        "name": name, "kind": kind, "method": method, "members": ";".join(members),
        "weights": ",".join(f"{w:.3f}" for w in weights),
        "miou": s["miou"], "pixel_acc": s["pixel_acc"], "mean_dice": s["mean_dice"],
        **(extra or {}),
    }  # fmt: skip


def build_map_ensembles(
    root: Path, methods: list[str] | None, metric: str = "miou", runs: list[str] | None = None
) -> pd.DataFrame:
    """Score every run and map ensemble; write ``leaderboard.csv`` and ``ensembles/*.yaml``."""
    import yaml

    from ..._io import atomic_write_text
    from ...ensemble.build import _spec

    if metric not in ("miou", "pixel_acc", "mean_dice"):
        raise EnsembleCVError(
            f"metric {metric!r}: segmentation ensembles rank by miou, pixel_acc or mean_dice."
        )
    methods = methods or DEFAULT_MAP_METHODS
    unknown = [m for m in methods if m not in list_map_methods()]
    if unknown:
        raise EnsembleCVError(
            f"Unknown map ensemble method(s) {unknown}; available: {', '.join(list_map_methods())}."
        )
    store = MapStore(root, runs)
    k, ig = len(store.classes), store.ignore_index
    masks = list(store.masks())
    truth = store.truth(store.side)
    test_masks = _test_masks(store)
    rows, specs = [], {}
    for name in store.names:
        cm = full_confusion(store.maps[name], masks, k, ig)
        extra = _test_scores(store, [name], np.ones(1), False, test_masks)
        rows.append(_row(name, "model", "single", [name], [1.0], cm, extra))
    if len(store.names) >= 2:
        for method in methods:
            est = _MAP_METHODS.get(method)()
            maps = [store.maps[n] for n in store.names]
            cm = nested_map_confusion(est, maps, truth, store.fold_of, masks, k, ig)
            fitted = copy.deepcopy(est).fit(maps, truth, ig)
            optimistic = full_confusion(fitted.predict_proba(maps), masks, k, ig)
            keep = [i for i, w in enumerate(fitted.weights_) if w > 0]
            members = [store.names[i] for i in keep]
            weights = [float(fitted.weights_[i]) for i in keep]
            extra = {"optimistic_miou": scores_from_confusion(optimistic)["miou"]}
            extra |= _test_scores(store, members, np.array(weights), est.geometric, test_masks)
            rows.append(_row(method, "ensemble", method, members, weights, cm, extra))
    board = pd.DataFrame(rows).sort_values(metric, ascending=False, kind="stable")
    board = board.reset_index(drop=True)
    ens_dir = root / "ensembles"
    ens_dir.mkdir(exist_ok=True)
    for row in board.to_dict("records"):
        members = str(row["members"]).split(";")
        weights = [float(w) for w in str(row["weights"]).split(",")]
        scores = {"cv": {m: float(row[m]) for m in ("miou", "pixel_acc", "mean_dice")}}
        if pd.notna(row.get("test_miou", np.nan)):
            scores["test"] = {"miou": float(row["test_miou"])}
        specs[row["name"]] = _spec(
            row["name"], row["method"], {}, members, weights, scores, store.names
        )
    for name, spec in specs.items():
        atomic_write_text(ens_dir / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False))
    best = dict(specs[board.loc[0, "name"]], alias="best")
    atomic_write_text(ens_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False))
    board.to_csv(root / "leaderboard.csv", index=False)
    return board


def _test_masks(store: MapStore):
    """The test masks in the stored test order (None when the runs have no labelled test maps)."""
    if store.test_ids is None or len(store.test) != len(store.names):
        return None
    import yaml  # the test set's path comes from a member run's saved config

    run = store.names[0].split("+")[0]
    config = yaml.safe_load((store.root / "runs" / run / "config.yaml").read_text(encoding="utf-8"))
    test = config.get("data", {}).get("test")
    if not test:
        return None
    from ...config import ExperimentConfig
    from .data import read_mask
    from .workspace import read_config_data

    data = read_config_data(ExperimentConfig.model_validate(config), test)
    by_id = dict(zip(data.images["sample_id"].astype(str), data.images["mask_path"]))
    if any(by_id.get(s) is None or pd.isna(by_id.get(s)) for s in store.test_ids):
        return None
    palette = data.palette if data.palette is not None else store.palette
    return [read_mask(str(by_id[s]), palette, store.ignore_index) for s in store.test_ids]


def _test_scores(store, members, weights, geometric, test_masks) -> dict:
    if test_masks is None:
        return {}
    maps = [store.test[m] for m in members]
    probs = _combine(maps, weights / weights.sum(), geometric)
    cm = full_confusion(probs, test_masks, len(store.classes), store.ignore_index)
    return {"test_miou": scores_from_confusion(cm)["miou"]}


__all__ = [
    "DEFAULT_MAP_METHODS",
    "MapGeometricMean",
    "MapGreedy",
    "MapGreedyGeometric",
    "MapMean",
    "MapStore",
    "build_map_ensembles",
    "list_map_methods",
    "nested_map_confusion",
]
