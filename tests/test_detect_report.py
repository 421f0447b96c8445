"""The detection report over a fabricated workspace, and the page in headless Chromium."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from detect_box_fakes import CLASSES, make_detect_workspace
from test_report import CHROMIUM, _chromium, page_console_messages

from ensemblecv.tasks.detect.ensembles import build_box_ensembles
from ensemblecv.tasks.detect.report import build_detection_report, confusion_frame, match_at

SMALL = {"iou_thrs": (0.55,), "skip_box_thrs": (0.0,), "max_rounds": 1}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_detect_workspace(tmp_path_factory.mktemp("detrep") / "ws")
    build_box_ensembles(ws, methods=["wbf", "nms"], params={"wbf": SMALL, "nms": SMALL})
    return ws


@pytest.fixture(scope="module")
def report(workspace):
    return build_detection_report(workspace)


def test_report_has_every_section(workspace, report):
    assert report == workspace / "report" / "index.html"
    page = report.read_text(encoding="utf-8")
    for anchor in ("leaderboard", "per-class-ap", "pr", "sizes", "confusion", "gallery"):
        assert f'id="{anchor}"' in page, anchor
    board = pd.read_csv(workspace / "leaderboard.csv")
    for name in board["name"]:
        assert f">{name}<" in page
    assert "dog &lt;b&gt;" in page and "dog <b>" not in page  # class names escaped
    assert "AP det_a" in page and "members kept (weight)" in page and "missed" in page
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (report.parent / src).is_file(), src
    assert 'src="img/pr_curves.png"' in page and 'src="img/gallery.png"' in page
    assert "http://" not in page and "https://" not in page


def test_confusion_counts_missed_and_background():
    boxes = pd.DataFrame({"sample_id": ["a", "a"], "label": [0, 1],
                          "x1": [0.0, 50.0], "y1": [0.0, 50.0], "x2": [10.0, 60.0], "y2": [10.0, 60.0]})  # fmt: skip
    dets = pd.DataFrame({"sample_id": ["a", "a", "b"], "label": [1, 0, 0], "score": [0.9, 0.8, 0.7],
                         "x1": [0.0, 30.0, 0.0], "y1": [0.0, 30.0, 0.0], "x2": [10.0, 40.0, 5.0],
                         "y2": [10.0, 40.0, 5.0]})  # fmt: skip
    pairs = match_at(dets, boxes, ["a", "b"], 0.5)
    cm = confusion_frame(pairs, CLASSES)
    values = cm[[*CLASSES, "missed"]].to_numpy()
    # true cat seen as dog; true dog missed; two detections on background (cat).
    np.testing.assert_array_equal(values, [[0, 1, 0], [0, 0, 1], [2, 0, 0]])


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_report_in_headless_chromium(report, tmp_path):
    dom = _chromium(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    assert 'data-images-ok="yes"' in body, body
    assert 'data-js-errors=""' in body, body
    assert int(re.search(r'data-n-images="(\d+)"', body).group(1)) >= 2
    assert page_console_messages(dom.stderr) == []


def test_report_cli(workspace, tmp_path):
    from typer.testing import CliRunner

    from ensemblecv.cli import app

    result = CliRunner().invoke(app, ["report", str(workspace), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").is_file()
