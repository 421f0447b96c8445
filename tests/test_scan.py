"""The scan decodes every file once: statistics, bad-file reasons, duplicate groups."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import IMAGES_PER_CLASS, make_image, noise_image, truncate_file

from ensemblecv.data.samples import load_samples
from ensemblecv.data.scan import (
    STAT_COLUMNS,
    ScanResult,
    duplicate_groups,
    exclude_bad,
    open_for_preview,
    scan_one,
    scan_table,
)
from ensemblecv.errors import DataError

N_GOOD = 3 * IMAGES_PER_CLASS
BAD_REASONS = {
    "cat/empty.png": "empty",
    "dog/fake.png": "not_an_image",
    "고양이 사진/cut.png": "truncated",
}


@pytest.fixture
def dirty_folder(image_folder: Path) -> Path:
    """``image_folder`` plus one empty, one non-image and one truncated file."""
    (image_folder / "cat" / "empty.png").write_bytes(b"")
    (image_folder / "dog" / "fake.png").write_text("<html>not found</html>")
    truncate_file(noise_image(image_folder / "고양이 사진" / "cut.png"))
    return image_folder


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ scanning


def test_scan_stats_of_good_files(image_folder):
    table = load_samples(image_folder)
    calls = []
    scan = scan_table(table, workers=0, progress=calls.append)
    assert isinstance(scan, ScanResult) and scan.table is table
    stats = scan.stats
    assert list(stats.columns) == STAT_COLUMNS
    assert len(stats) == len(table)
    assert scan.ok.all() and scan.ok.dtype == bool
    assert (stats["width"] == 16).all() and (stats["height"] == 16).all()
    assert (stats["mode"] == "RGB").all() and (stats["format"] == "PNG").all()
    assert not stats["format_mismatch"].any()
    assert stats["hash"].str.len().eq(32).all() and stats["hash"].is_unique
    assert sum(calls) == len(table)
    assert scan.bad_files().empty
    # solid colour images: contrast 0, channel means equal the colour
    first = stats.iloc[0]
    assert first["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert first["r_mean"] == pytest.approx(10 / 255, abs=1e-5)
    assert first["g_mean"] == pytest.approx(5 / 255, abs=1e-5)
    assert first["b_mean"] == pytest.approx(200 / 255, abs=1e-5)
    assert first["r_sq"] == pytest.approx((10 / 255) ** 2, rel=1e-4)
    assert first["gray_sq"] == pytest.approx(first["gray_mean"] ** 2, rel=1e-4)
    assert first["brightness"] == first["gray_mean"]


@pytest.mark.parametrize("chunk_size", [1, 5, 256])
def test_scan_in_workers_equals_in_process(dirty_folder, chunk_size, always_parallel):
    table = load_samples(dirty_folder)
    serial = scan_table(table, workers=0, chunk_size=chunk_size)
    calls = []
    parallel = scan_table(table, workers=2, chunk_size=chunk_size, progress=calls.append)
    pd.testing.assert_frame_equal(serial.stats, parallel.stats)
    assert sum(calls) == len(table)
    assert len(calls) == -(-len(table) // chunk_size)  # one call per chunk
    n_chunks = -(-len(table) // chunk_size)
    # the first chunk is timed in this process; the rest go to the workers
    assert always_parallel == ([n_chunks - 1] if n_chunks > 1 else [])


def test_a_short_scan_starts_no_workers(dirty_folder, monkeypatch):
    import ensemblecv.data.scan as scan

    def no_pool(*args, **kwargs):
        raise AssertionError("a scan estimated under PARALLEL_AFTER_S started worker processes")

    monkeypatch.setattr(scan, "_scan_parallel", no_pool)
    table = load_samples(dirty_folder)
    calls = []
    quick = scan_table(table, workers=2, chunk_size=3, progress=calls.append)
    pd.testing.assert_frame_equal(quick.stats, scan_table(table, workers=0).stats)
    assert sum(calls) == len(table)


def test_a_broken_pool_falls_back_to_this_process(dirty_folder, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import ensemblecv.data.scan as scan

    def broken(*args, **kwargs):
        raise BrokenProcessPool("a worker died")

    monkeypatch.setattr(scan, "PARALLEL_AFTER_S", 0.0)
    monkeypatch.setattr(scan, "_scan_parallel", broken)
    table = load_samples(dirty_folder)
    with pytest.warns(RuntimeWarning, match="Parallel decoding failed"):
        fallback = scan_table(table, workers=2, chunk_size=3)
    pd.testing.assert_frame_equal(fallback.stats, scan_table(table, workers=0).stats)


def test_a_scan_without_statistics_finds_the_same_bad_files(dirty_folder, always_parallel):
    table = load_samples(dirty_folder)
    full = scan_table(table, workers=0)
    for workers in (0, 2):
        quick = scan_table(table, workers=workers, chunk_size=5, stats=False)
        pd.testing.assert_frame_equal(quick.bad_files(), full.bad_files())
        same = ["ok", "width", "height", "mode", "format", "format_mismatch"]
        pd.testing.assert_frame_equal(quick.stats[same], full.stats[same])
        assert quick.stats["brightness"].isna().all() and (quick.stats["hash"] == "").all()
    assert always_parallel  # the workers' path was taken too


def test_bad_files_are_found_with_reasons(dirty_folder):
    table = load_samples(dirty_folder)
    assert len(table) == N_GOOD + len(BAD_REASONS)  # bad files are samples until scanned
    scan = scan_table(table, workers=0)
    assert scan.ok.sum() == N_GOOD
    bad = scan.bad_files()
    assert list(bad.columns) == ["path", "sample_id", "reason", "detail", "explanation"]
    assert dict(zip(bad["sample_id"], bad["reason"], strict=True)) == BAD_REASONS
    assert bad.set_index("sample_id").loc["고양이 사진/cut.png", "detail"] != ""
    assert (
        bad.set_index("sample_id").loc["cat/empty.png", "explanation"] == "file is empty (0 bytes)"
    )
    for path, sid in zip(bad["path"], bad["sample_id"], strict=True):
        assert path == str(dirty_folder / sid)
    bad_stats = scan.stats[~scan.ok]
    assert bad_stats["hash"].eq("").all() and bad_stats["brightness"].isna().all()
    assert (bad_stats[["width", "height"]] == 0).all().all()


def _row(values: tuple) -> dict:
    return dict(zip(STAT_COLUMNS, values, strict=True))


def test_scan_one_reports_missing_and_bomb(tmp_path):
    row = _row(scan_one(str(tmp_path / "gone.png")))
    assert row["ok"] is False and row["reason"] == "missing"
    big = make_image(tmp_path / "big.png", size=(20, 20))
    row = _row(scan_one(str(big), max_pixels=100))
    assert row["ok"] is False and row["reason"] == "decompression_bomb"
    assert _row(scan_one(str(big)))["ok"] is True


def test_scan_max_pixels_is_passed_to_workers(image_folder):
    table = load_samples(image_folder)
    for workers in (0, 2):
        scan = scan_table(table, workers=workers, max_pixels=100, chunk_size=2)
        assert not scan.ok.any()
        assert set(scan.stats["reason"]) == {"decompression_bomb"}


def test_scan_format_mismatch_and_large_images(tmp_path):
    root = tmp_path / "mixed"
    make_image(root / "png_named.jpg", format="PNG")
    make_image(root / "real.jpg")
    make_image(root / "big16.png", mode="I;16", size=(600, 300), color=65535)
    make_image(root / "noext", format="PNG")
    table = load_samples(root)
    stats = scan_table(table, workers=0).stats.set_index(table.frame["sample_id"])
    assert stats["ok"].all()
    assert stats.loc["png_named.jpg", "format_mismatch"]
    assert stats.loc["png_named.jpg", "format"] == "PNG"
    assert not stats.loc["real.jpg", "format_mismatch"]
    assert not stats.loc["noext", "format_mismatch"]
    # full size is reported even though statistics use a thumbnail
    assert (stats.loc["big16.png", "width"], stats.loc["big16.png", "height"]) == (600, 300)
    assert stats.loc["big16.png", "mode"] == "I;16"
    assert stats.loc["big16.png", "brightness"] == pytest.approx(1.0)


def test_scan_builtin_digits():
    table = load_samples("digits:test")
    table = table.subset(np.arange(len(table)) < 12)
    scan = scan_table(table, workers=0)
    assert scan.ok.all()
    assert (scan.stats["format"] == "array").all()
    assert (scan.stats["width"] == 8).all() and (scan.stats["mode"] == "L").all()
    assert scan.stats["hash"].str.len().eq(32).all()


def test_scan_never_modifies_source_files(dirty_folder, always_parallel):
    png = make_image(dirty_folder / "cat" / "exif.jpg", size=(20, 10))
    before = _snapshot(dirty_folder)
    assert str(png) in before
    table = load_samples(dirty_folder)
    scan = scan_table(table, workers=0)
    scan_table(table, workers=2, chunk_size=3)
    duplicate_groups(table, scan.stats["hash"])
    with pytest.warns(UserWarning):
        exclude_bad(scan)
    open_for_preview(str(png))
    assert _snapshot(dirty_folder) == before


# ------------------------------------------------------------- excluding bad


def test_exclude_bad_warns_and_writes_report(dirty_folder, tmp_path):
    scan = scan_table(load_samples(dirty_folder), workers=0)
    report = tmp_path / "report" / "nested" / "bad_files.csv"
    with pytest.warns(
        UserWarning,
        match=rf"Excluding 3 unreadable image file\(s\):(?s:.*)Full list: {re.escape(str(report))}",
    ):
        clean = exclude_bad(scan, report_path=report)
    assert len(clean) == N_GOOD
    assert set(clean.frame["sample_id"]).isdisjoint(BAD_REASONS)
    assert clean.classes == scan.table.classes
    assert clean.frame.index.tolist() == list(range(N_GOOD))
    written = pd.read_csv(report, keep_default_na=False)
    assert list(written.columns) == ["path", "sample_id", "reason", "detail", "explanation"]
    assert dict(zip(written["sample_id"], written["reason"], strict=True)) == BAD_REASONS


def test_exclude_bad_warning_names_files(dirty_folder):
    scan = scan_table(load_samples(dirty_folder), workers=0)
    with pytest.warns(UserWarning, match=r"fake\.png: not_an_image") as record:
        exclude_bad(scan)
    message = str(record[0].message)
    assert "empty.png: empty" in message and "cut.png: truncated" in message
    assert "Full list" not in message  # no report path, no pointer to one


def test_exclude_bad_strict_raises(dirty_folder, tmp_path):
    scan = scan_table(load_samples(dirty_folder), workers=0)
    report = tmp_path / "bad.csv"
    with pytest.raises(
        DataError, match=r"3 image file\(s\) cannot be used \(--strict\):\n  - .*empty\.png: empty"
    ):
        exclude_bad(scan, strict=True, report_path=report)
    assert report.is_file()  # the full list is written before aborting


def test_exclude_bad_without_bad_files_is_silent(image_folder, tmp_path, recwarn):
    table = load_samples(image_folder)
    report = tmp_path / "bad.csv"
    assert exclude_bad(scan_table(table, workers=0), strict=True, report_path=report) is table
    assert not report.exists()
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ------------------------------------------------------------ duplicate groups


def test_duplicate_groups_merge_identical_bytes(image_folder):
    shutil.copyfile(image_folder / "dog" / "img 1.png", image_folder / "cat" / "z copy.png")
    shutil.copyfile(image_folder / "dog" / "img 1.png", image_folder / "고양이 사진" / "again.png")
    table = load_samples(image_folder)
    scan = scan_table(table, workers=0)
    grouped = duplicate_groups(table, scan.stats["hash"])
    groups = dict(zip(grouped.frame["sample_id"], grouped.frame["group"], strict=True))
    expected = "cat/z copy.png"  # the smallest id of the three copies
    assert min(["dog/img 1.png", "cat/z copy.png", "고양이 사진/again.png"]) == expected
    for sid in ("dog/img 1.png", "cat/z copy.png", "고양이 사진/again.png"):
        assert groups[sid] == expected
    others = [
        g
        for sid, g in groups.items()
        if sid not in ("dog/img 1.png", "cat/z copy.png", "고양이 사진/again.png")
    ]
    assert len(others) == len(table) - 3 and all(pd.isna(g) for g in others)
    assert table.frame["group"].isna().all()  # the input table is not modified
    assert grouped.classes == table.classes and len(grouped) == len(table)


def test_duplicate_groups_join_user_groups_transitively(tmp_path):
    root = tmp_path / "ds"
    for name, color in [("e", 1), ("d", 2), ("c", 3), ("b", 4), ("a", 5), ("f", 6), ("g", 7)]:
        make_image(root / "img" / f"{name}.png", color=(color, 0, 0))
    shutil.copyfile(root / "img" / "c.png", root / "img" / "c2.png")  # c ≡ c2 by content
    shutil.copyfile(root / "img" / "g.png", root / "img" / "g2.png")  # g ≡ g2, no user group
    (root / "img" / "x.png").write_bytes(b"")  # two bad files: same (empty) hash, never grouped
    (root / "img" / "y.png").write_bytes(b"")
    (root / "index.csv").write_text(
        "image_path,target,group\n"
        "img/e.png,0,patient1\n"  # e ~ d (user group)
        "img/d.png,0,patient1\n"
        "img/c2.png,1,patient2\n"  # c2 ~ b (user), c2 ≡ c (content), c ~ e, d (user)
        "img/c.png,1,patient1\n"
        "img/b.png,1,patient2\n"
        "img/a.png,0,\n"  # a alone
        "img/f.png,1,solo\n"  # a user group of one is no group
        "img/g.png,0,\n"
        "img/g2.png,0,\n"
        "img/x.png,0,\n"
        "img/y.png,0,\n"
    )
    table = load_samples(root / "index.csv")
    scan = scan_table(table, workers=0)
    assert scan.ok.sum() == 9
    grouped = duplicate_groups(table, scan.stats["hash"])
    groups = dict(zip(grouped.frame["sample_id"], grouped.frame["group"], strict=True))
    for sid in ("img/e.png", "img/d.png", "img/c2.png", "img/c.png", "img/b.png"):
        assert groups[sid] == "img/b.png"  # one component, named by its smallest id
    assert groups["img/g.png"] == groups["img/g2.png"] == "img/g.png"
    for sid in ("img/a.png", "img/f.png", "img/x.png", "img/y.png"):
        assert pd.isna(groups[sid]), sid
    assert grouped.frame["sample_id"].tolist() == table.frame["sample_id"].tolist()  # order kept


def test_duplicate_groups_singletons_are_none(image_folder):
    # The table contract: group None = the sample alone (an object column, as
    # from_folder builds it), not NaN — NaN is truthy, so `group or sample_id`
    # would put every ungrouped sample into one group.
    shutil.copyfile(image_folder / "cat" / "img 0.png", image_folder / "dog" / "dup.png")
    table = load_samples(image_folder)
    grouped = duplicate_groups(table, scan_table(table, workers=0).stats["hash"])
    assert grouped.frame["group"].dtype == object
    singles = grouped.frame.loc[grouped.frame["sample_id"] != "dog/dup.png", "group"].tolist()[1:]
    assert singles and all(g is None for g in singles)


def test_duplicate_groups_are_stable_under_row_order(image_folder):
    shutil.copyfile(image_folder / "cat" / "img 0.png", image_folder / "dog" / "dup.png")
    table = load_samples(image_folder)
    hashes = scan_table(table, workers=0).stats["hash"]
    order = np.random.default_rng(1).permutation(len(table))
    shuffled = type(table)(
        table.frame.iloc[order].reset_index(drop=True), table.classes, table.source
    )
    a = duplicate_groups(table, hashes).frame.set_index("sample_id")["group"]
    b = duplicate_groups(shuffled, hashes.iloc[order].reset_index(drop=True)).frame.set_index(
        "sample_id"
    )["group"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
    assert a["dog/dup.png"] == "cat/img 0.png"


def test_open_for_preview(tmp_path):
    path = make_image(tmp_path / "a.png", mode="RGBA", color=(0, 0, 0, 0))
    img = open_for_preview(str(path))
    assert img.mode == "RGB" and img.size == (16, 16) and img.getpixel((0, 0)) == (255, 255, 255)
    gray = open_for_preview(str(path), channels=1)
    assert gray.mode == "L"


def test_scan_runs_from_any_cwd(image_folder, tmp_path, monkeypatch, always_parallel):
    table = load_samples(image_folder)
    monkeypatch.chdir(tmp_path)
    os.makedirs("elsewhere", exist_ok=True)
    monkeypatch.chdir("elsewhere")
    assert scan_table(table, workers=2, chunk_size=4).ok.all()  # absolute paths in the table
    assert always_parallel  # the workers really ran
