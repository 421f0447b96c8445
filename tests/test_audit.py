"""Contract tests for the dataset audit, on tiny image folders built per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ensemblecv.audit import AuditResult, run_audit, summarize
from ensemblecv.audit import plots as audit_plots
from ensemblecv.audit.compute import compute_audit
from ensemblecv.audit.html import render_html
from ensemblecv.data.samples import load_samples
from ensemblecv.data.scan import scan_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _save_random(path: Path, rng: np.random.Generator, size=(16, 16), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 4 good images plus the usual trouble.

    a: + exact copy of a/0.png (within-class duplicate) + zero-byte file
    b: + text file named .png
    c: + copy of b/0.png (cross-class duplicate) + truncated PNG
    """
    rng = np.random.default_rng(0)
    tmp_path = tmp_path_factory.mktemp("messy")
    root = tmp_path / "data"
    for cls in "abc":
        for i in range(4):
            _save_random(root / cls / f"{i}.png", rng, mode="L" if cls == "b" else "RGB")
    shutil.copy(root / "a" / "0.png", root / "a" / "copy.png")
    shutil.copy(root / "b" / "0.png", root / "c" / "from_b.png")
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "b" / "text.png").write_text("not an image", encoding="utf-8")
    _save_random(tmp_path / "big.png", rng, size=(64, 64))
    data = (tmp_path / "big.png").read_bytes()
    (root / "c" / "trunc.png").write_bytes(data[: len(data) * 2 // 3])
    (root / "b" / "notes.txt").write_text("ignored", encoding="utf-8")
    return root


def _good_paths(root: Path) -> list[Path]:
    bad = {"empty.png", "text.png", "trunc.png"}
    return sorted(p for p in root.rglob("*.png") if p.name not in bad)


@pytest.fixture(scope="module")
def audited(messy: Path, tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    """One audit shared by the read-only tests (plotting dominates its cost)."""
    out = tmp_path_factory.mktemp("audit") / "out"
    return run_audit(str(messy), out, workers=0, progress=False)


def test_counts_per_class_and_small_classes(audited: AuditResult) -> None:
    a = audited.audit
    assert a["classes"] == ["a", "b", "c"]
    assert a["class_counts"] == {"a": 6, "b": 5, "c": 6}
    assert a["usable_class_counts"] == {"a": 5, "b": 4, "c": 5}
    assert (a["n_images"], a["n_ok"], a["n_bad"]) == (17, 14, 3)
    # Small classes count usable images: bad files are dropped before folds are made.
    assert a["small_classes"] == ["b"]
    assert a["imbalance_ratio"] == pytest.approx(5 / 4)
    assert any(w["code"] == "small_classes" and "b" in w["message"] for w in a["warnings"])


def test_bad_files_listed_with_reasons(audited: AuditResult) -> None:
    reasons = {Path(b["path"]).name: b["reason"] for b in audited.audit["bad_files"]}
    assert reasons == {"empty.png": "empty", "text.png": "not_an_image", "trunc.png": "truncated"}
    assert all(b["explanation"] for b in audited.audit["bad_files"])
    ignored = [Path(i["path"]).name for i in audited.audit["ignored_files"]]
    assert ignored == ["notes.txt"]


def test_duplicates_split_within_and_across_classes(audited: AuditResult, messy: Path) -> None:
    dup = audited.audit["duplicates"]
    assert dup["n_within_class_groups"] == 1 and dup["n_cross_class_groups"] == 1
    (within,) = dup["within_class"]
    assert sorted(within["paths"]) == sorted(
        [str(messy / "a" / "0.png"), str(messy / "a" / "copy.png")]
    )
    assert within["classes"] == ["a", "a"]
    (cross,) = dup["cross_class"]
    assert dict(zip(cross["paths"], cross["classes"], strict=True)) == {
        str(messy / "b" / "0.png"): "b",
        str(messy / "c" / "from_b.png"): "c",
    }
    assert dup["n_redundant_files"] == 2


def test_normalization_matches_numpy_per_image_mean(audited: AuditResult, messy: Path) -> None:
    rgb_means, rgb_sqs, gray_means, gray_sqs = [], [], [], []
    for path in _good_paths(messy):
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255
            gray = np.asarray(img.convert("L"), dtype=np.float64).ravel() / 255
        rgb_means.append(rgb.mean(0))
        rgb_sqs.append((rgb**2).mean(0))
        gray_means.append(gray.mean())
        gray_sqs.append((gray**2).mean())
    mean = np.mean(rgb_means, axis=0)
    std = np.sqrt(np.mean(rgb_sqs, axis=0) - mean**2)
    g_mean = np.mean(gray_means)
    g_std = np.sqrt(np.mean(gray_sqs) - g_mean**2)
    norm = audited.audit["normalization"]
    assert norm["rgb"]["mean"] == pytest.approx(mean, abs=1e-5)
    assert norm["rgb"]["std"] == pytest.approx(std, abs=1e-5)
    assert norm["gray"]["mean"] == pytest.approx([g_mean], abs=1e-5)
    assert norm["gray"]["std"] == pytest.approx([g_std], abs=1e-5)


def test_sizes_modes_and_brightness(audited: AuditResult) -> None:
    a = audited.audit
    assert a["sizes"]["most_common"] == [{"width": 16, "height": 16, "count": 14}]
    assert a["aspect_ratio"]["median"] == 1.0 and a["aspect_ratio"]["n_square"] == 14
    assert a["modes"] == {"RGB": 9, "L": 5}
    assert a["channels"] == {"1": 5, "3": 9}
    assert a["formats"] == {"PNG": 14}
    assert 0.4 < a["brightness"]["mean"] < 0.6 and a["contrast"]["min"] > 0.1


def test_json_and_html_written(audited: AuditResult) -> None:
    out = audited.json_path.parent
    assert out.name == "out" and audited.html_path == out / "audit.html"
    on_disk = json.loads(audited.json_path.read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(audited.audit))
    assert {b["reason"] for b in on_disk["bad_files"]} == {"empty", "not_an_image", "truncated"}
    page = audited.html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["aspect_ratio.png", "brightness_contrast.png", "class_counts.png",
                    "sample_grid.png", "size_scatter.png"]  # fmt: skip
    assert all((out / "plots" / p).read_bytes().startswith(PNG_MAGIC) for p in pngs)
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "plots"]


def test_korean_and_markup_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "데이터 폴더"
    names = ["고양이 사진", "<b>dogs & co"]
    for name in names:
        for i in range(3):
            _save_random(root / name / f"사진 {i}.png", rng)
    result = run_audit(str(root), tmp_path / "출력", workers=0, progress=False)
    assert result.audit["class_counts"] == {"<b>dogs & co": 3, "고양이 사진": 3}
    assert set(result.audit["small_classes"]) == set(names)
    page = result.html_path.read_text(encoding="utf-8")
    assert "고양이 사진" in page
    assert "&lt;b&gt;dogs &amp; co" in page and "<b>dogs" not in page
    saved = json.loads(result.json_path.read_text(encoding="utf-8"))
    assert "고양이 사진" in result.json_path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert saved["classes"] == sorted(names)


def test_sample_grid_opens_only_shown_images(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    root = tmp_path / "many"
    sizes = {f"class_{k:02d}": 1 + k % 4 for k in range(35)}
    for name, n in sizes.items():
        for i in range(n):
            _save_random(root / name / f"{i}.png", rng, size=(8, 8))
    opened: list[str] = []
    real = audit_plots.open_for_preview

    def counting(path: str, channels: int = 3):
        opened.append(path)
        return real(path, channels)

    monkeypatch.setattr(audit_plots, "open_for_preview", counting)
    result = run_audit(str(root), tmp_path / "out", workers=0, per_class_samples=2, progress=False)
    grid = result.audit["sample_grid"]
    expected = sorted(sorted(sizes), key=lambda c: (sizes[c], c))[:30]
    assert grid["classes"] == sorted(expected)
    assert "30 smallest of 35" in grid["note"]
    assert len(opened) == grid["n_images"] == sum(min(sizes[c], 2) for c in expected)
    assert {Path(p).parent.name for p in opened} == set(expected)
    assert "30 smallest of 35" in result.html_path.read_text(encoding="utf-8")


def test_parallel_scan_gives_the_same_audit(messy: Path, always_parallel) -> None:
    table = load_samples(str(messy))
    serial = compute_audit(scan_table(table, workers=0))
    # chunk_size=4 forces several chunks, so the process pool is really used.
    parallel = compute_audit(scan_table(table, workers=2, chunk_size=4))
    assert parallel == serial
    assert always_parallel


def test_run_audit_with_two_workers_matches(messy: Path, tmp_path: Path, always_parallel) -> None:
    a0 = run_audit(str(messy), tmp_path / "w0", workers=0, progress=False).audit
    a2 = run_audit(str(messy), tmp_path / "w2", workers=2, progress=False).audit
    for a in (a0, a2):
        a.pop("run"), a.pop("outputs")
    assert a2 == a0


def test_unlabelled_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for i in range(5):
        _save_random(tmp_path / "test" / f"{i}.png", rng, size=(20, 10))
    result = run_audit(str(tmp_path / "test"), tmp_path / "out", workers=0, progress=False)
    a = result.audit
    assert a["classes"] == [] and a["n_unlabelled"] == 5 and a["imbalance_ratio"] is None
    assert a["aspect_ratio"]["n_landscape"] == 5 and a["duplicates"]["n_within_class_groups"] == 0
    assert a["sample_grid"]["classes"] == ["(unlabelled)"]
    assert "class_counts" not in [Path(p).stem for p in a["outputs"]["plots"]]


def test_format_mismatch_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for i in range(2):
        _save_random(tmp_path / "d" / "x" / f"{i}.png", rng)
    _save_random(tmp_path / "png_named_jpg.png", rng)
    shutil.move(tmp_path / "png_named_jpg.png", tmp_path / "d" / "x" / "fake.jpg")
    a = compute_audit(scan_table(load_samples(str(tmp_path / "d")), workers=0))
    assert [Path(p).name for p in a["format_mismatch"]] == ["fake.jpg"]
    assert any(w["code"] == "format_mismatch" for w in a["warnings"])


def test_html_caps_long_lists() -> None:
    audit = _fake_audit(n_bad=600, n_dup=250)
    page = render_html(audit, {})
    assert "first 500 of 600 bad files" in page and "first 200 of 250 groups" in page
    assert page.count("/x/bad_") == 500


def test_class_counts_plot_with_500_classes() -> None:
    counts = {f"c{i:03d}": int(i % 50 + 1) for i in range(500)}
    png = audit_plots.class_counts_png(counts, small=["c000"], min_per_class=5)
    assert png.startswith(PNG_MAGIC)


def test_summarize_prints_key_numbers(audited: AuditResult) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    summarize(audited.audit, console)
    text = console.export_text()
    assert "17 (14 decodable, 3 bad)" in text
    assert "cannot be decoded" in text and "audit.html" in text and "rgb mean" in text


def _fake_audit(n_bad: int, n_dup: int) -> dict:
    """The smallest audit dict render_html accepts, with long lists."""
    return {
        "source": "/x", "n_images": n_bad, "n_ok": 0, "n_bad": n_bad, "n_classes": 0,
        "n_unlabelled": 0, "classes": [], "class_counts": {}, "usable_class_counts": {},
        "small_classes": [], "min_per_class": 5, "imbalance_ratio": None, "sizes": None,
        "aspect_ratio": None, "modes": {}, "channels": {}, "formats": {}, "format_mismatch": [],
        "brightness": None, "contrast": None, "normalization": None,
        "duplicates": {
            "within_class": [{"hash": f"{i:032x}", "paths": [f"/x/d{i}a", f"/x/d{i}b"],
                              "classes": ["a", "a"]} for i in range(n_dup)],
            "cross_class": [], "n_within_class_groups": n_dup, "n_cross_class_groups": 0,
        },
        "bad_files": [{"path": f"/x/bad_{i}.png", "reason": "empty", "detail": "",
                       "explanation": "file is empty (0 bytes)"} for i in range(n_bad)],
        "ignored_files": [], "warnings": [],
    }  # fmt: skip


def test_existing_scan_is_audited_without_decoding_again(
    messy: Path, tmp_path: Path, monkeypatch
) -> None:
    from ensemblecv.audit import run as audit_run

    scan = scan_table(load_samples(str(messy)), workers=0)

    def no_scan(*args, **kwargs):
        raise AssertionError("run_audit decoded the dataset a second time")

    monkeypatch.setattr(audit_run, "scan_table", no_scan)
    result = run_audit(scan, tmp_path / "out", per_class_samples=0, progress=False)
    assert result.scan is scan and result.audit["n_bad"] == 3
    assert result.audit["run"]["images_per_s"] is None and "sample_grid" not in result.audit
