"""prepare_workspace: scan → exclude bad files → group duplicates → folds, written once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ensemblecv.data.samples import from_folder
from ensemblecv.errors import DataError
from ensemblecv.workspace import Workspace, prepare_workspace

CLASSES = ["ant", "bee", "cow"]
EMPTY = "ant/3.png"
DUP_A, DUP_B = "bee/1.png", "bee/copy of 1.png"


def _png(path: Path, color, size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _dataset(root: Path) -> Path:
    """3 classes × 6 files: ``ant/3.png`` is zero bytes, ``bee`` has one exact duplicate pair."""
    for c, name in enumerate(CLASSES):
        for i in range(6):
            _png(root / name / f"{i}.png", (60 * c + 5, 30 * i + 3, 11))
    (root / EMPTY).write_bytes(b"")
    (root / "bee" / "5.png").unlink()
    (root / DUP_B).write_bytes((root / DUP_A).read_bytes())
    return root


def _prepare(ws_root: Path, data, **kwargs) -> Workspace:
    with pytest.warns(UserWarning, match=r"Excluding 1 unreadable image file"):
        return prepare_workspace(ws_root, data, folds=3, seed=0, workers=0, **kwargs)


def test_prepare_writes_tables(tmp_path):
    data = _dataset(tmp_path / "data")
    ws = _prepare(tmp_path / "ws", str(data))
    assert ws.is_prepared()
    for path in (ws.samples_path, ws.classes_path, ws.folds_path, ws.bad_files_path):
        assert path.is_file(), path
    assert json.loads(ws.classes_path.read_text(encoding="utf-8")) == CLASSES
    samples = pd.read_parquet(ws.samples_path)
    assert len(samples) == 17
    assert EMPTY not in set(samples["sample_id"])
    bad = pd.read_csv(ws.bad_files_path)
    assert bad["sample_id"].tolist() == [EMPTY]
    assert bad["reason"].tolist() == ["empty"]
    assert bad["path"].tolist() == [str(data / EMPTY)]
    assert "0 bytes" in bad["explanation"].iloc[0]
    folds = pd.read_parquet(ws.folds_path)
    assert sorted(folds["sample_id"]) == sorted(samples["sample_id"])
    assert set(folds["fold"]) == {0, 1, 2}


def test_warning_names_the_file_and_report(tmp_path):
    data = _dataset(tmp_path / "data")
    with pytest.warns(UserWarning) as record:
        prepare_workspace(tmp_path / "ws", str(data), folds=3, workers=0)
    messages = [str(w.message) for w in record if issubclass(w.category, UserWarning)]
    assert any(EMPTY.split("/")[1] in m and "empty" in m and "bad_files.csv" in m for m in messages)


def test_strict_raises_and_prepares_nothing(tmp_path):
    data = _dataset(tmp_path / "data")
    with pytest.raises(
        DataError, match=r"(?s)1 image file\(s\) cannot be used \(--strict\).*3\.png: empty"
    ):
        prepare_workspace(tmp_path / "ws", str(data), folds=3, workers=0, strict=True)
    ws = Workspace(tmp_path / "ws")
    assert not ws.is_prepared()
    assert not ws.folds_path.exists() and not ws.samples_path.exists()


def test_duplicates_grouped_in_one_fold(tmp_path):
    ws = _prepare(tmp_path / "ws", str(_dataset(tmp_path / "data")))
    folds = pd.read_parquet(ws.folds_path).set_index("sample_id")
    assert folds.loc[DUP_A, "fold"] == folds.loc[DUP_B, "fold"]
    assert folds.loc[DUP_A, "group"] == folds.loc[DUP_B, "group"] == DUP_A
    assert folds["group"].notna().sum() == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_duplicates_share_fold_for_any_seed(tmp_path, seed):
    with pytest.warns(UserWarning):
        ws = prepare_workspace(
            tmp_path / "ws", str(_dataset(tmp_path / "data")), folds=3, seed=seed, workers=0
        )
    folds = pd.read_parquet(ws.folds_path).set_index("sample_id")["fold"]
    assert folds[DUP_A] == folds[DUP_B]


def test_prepare_is_idempotent(tmp_path):
    data = _dataset(tmp_path / "data")
    ws = _prepare(tmp_path / "ws", str(data))
    folds_bytes = ws.folds_path.read_bytes()
    samples_bytes = ws.samples_path.read_bytes()
    mtime = ws.folds_path.stat().st_mtime_ns
    # A different seed or fold count does not re-split a prepared workspace.
    with pytest.warns(UserWarning, match=r"Excluding 1"):
        again = prepare_workspace(tmp_path / "ws", str(data), folds=4, seed=7, workers=0)
    assert again == ws
    assert ws.folds_path.read_bytes() == folds_bytes
    assert ws.samples_path.read_bytes() == samples_bytes
    assert ws.folds_path.stat().st_mtime_ns == mtime


def test_prepare_accepts_a_table(tmp_path):
    data = _dataset(tmp_path / "data")
    ws = _prepare(tmp_path / "ws", from_folder(data))
    assert len(pd.read_parquet(ws.folds_path)) == 17


def test_different_classes_in_same_workspace_refused(tmp_path):
    _prepare(tmp_path / "ws", str(_dataset(tmp_path / "data")))
    other = tmp_path / "other"
    for name in ("x", "y"):
        for i in range(4):
            _png(other / name / f"{i}.png", (i * 40, 9, 9))
    with pytest.raises(
        DataError, match=r"prepared with classes \['ant', 'bee', 'cow'\].*use a new workspace"
    ):
        prepare_workspace(tmp_path / "ws", str(other), folds=3, workers=0)


def test_changed_samples_in_same_workspace_refused(tmp_path):
    data = _dataset(tmp_path / "data")
    ws = _prepare(tmp_path / "ws", str(data))
    before = ws.folds_path.read_bytes()
    _png(data / "cow" / "new.png", (1, 250, 1))
    with (
        pytest.warns(UserWarning),
        pytest.raises(
            DataError, match=r"(?s)different set of samples \(1 new, 0 gone\).*new: cow/new\.png"
        ),
    ):
        prepare_workspace(tmp_path / "ws", str(data), folds=3, workers=0)
    assert ws.folds_path.read_bytes() == before


def test_load_table_round_trip(tmp_path):
    data = _dataset(tmp_path / "data")
    ws = _prepare(tmp_path / "ws", str(data))
    table = ws.load_table()
    assert table.classes == CLASSES
    assert table.labelled
    folds = ws.load_folds()
    assert table.frame["sample_id"].tolist() == folds["sample_id"].tolist()
    assert table.frame["label"].tolist() == folds["label"].tolist()
    expected = from_folder(data).frame.set_index("sample_id").drop(EMPTY)
    frame = table.frame.set_index("sample_id")
    assert sorted(frame.index) == sorted(expected.index)
    assert (frame["label"] == expected.loc[frame.index, "label"]).all()
    assert (frame["path"] == expected.loc[frame.index, "path"]).all()
    assert (frame["class_name"] == expected.loc[frame.index, "class_name"]).all()
    groups = frame["group"]
    assert groups[DUP_A] == groups[DUP_B] == DUP_A
    others = groups.drop([DUP_A, DUP_B])
    assert all(g is None for g in others), others  # None, not NaN or the string "None"
    # The re-loaded table is consistent with its own folds.
    from ensemblecv.data.folds import load_folds

    load_folds(ws.folds_path, table)


def test_load_table_of_unprepared_workspace(tmp_path):
    with pytest.raises(DataError, match=r"is not a prepared workspace \(run `ensemblecv split"):
        Workspace(tmp_path / "nothing").load_table()


def test_clean_dataset_no_warning(tmp_path):
    root = tmp_path / "clean"
    for c, name in enumerate(CLASSES):
        for i in range(4):
            _png(root / name / f"{i}.png", (c * 80, i * 50, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ws = prepare_workspace(tmp_path / "ws", str(root), folds=2, workers=0)
    assert not ws.bad_files_path.exists()
    assert ws.load_table().frame["group"].isna().all()


def test_refused_dataset_leaves_workspace_files_alone(tmp_path):
    ws = _prepare(tmp_path / "ws", str(_dataset(tmp_path / "data")))
    snapshot = {p.name: p.read_bytes() for p in ws.root.iterdir() if p.is_file()}
    other = tmp_path / "other"
    for name in ("x", "y"):
        for i in range(4):
            _png(other / name / f"{i}.png", (i * 40, 9, 9))
    (other / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"prepared with classes"):
        prepare_workspace(tmp_path / "ws", str(other), folds=2, workers=0)
    # The rejected dataset's bad-file list must not replace the workspace's own.
    assert {p.name: p.read_bytes() for p in ws.root.iterdir() if p.is_file()} == snapshot
