"""Every data source (folder, CSV index, built-in name) becomes the same SampleTable."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import IMAGE_FOLDER_CLASSES, IMAGES_PER_CLASS, NESTED_IMAGE, make_image

from ensemblecv.data import builtin
from ensemblecv.data.imageio import load_image
from ensemblecv.data.samples import COLUMNS, SampleTable, from_folder, load_samples
from ensemblecv.errors import DataError

# ------------------------------------------------------------------ folders


def test_image_folder_classes_labels_and_ids(image_folder):
    table = load_samples(image_folder)
    assert table.classes == IMAGE_FOLDER_CLASSES  # sorted, Korean name last
    assert list(table.frame.columns) == COLUMNS
    assert len(table) == 3 * IMAGES_PER_CLASS
    assert table.labelled and table.num_classes == 3
    assert table.root == image_folder.absolute()
    assert table.ignored == []
    frame = table.frame
    for _, r in frame.iterrows():
        top = r["sample_id"].split("/")[0]
        assert r["class_name"] == top
        assert table.classes[r["label"]] == top
        assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()
        assert Path(r["path"]) == image_folder / r["sample_id"]
    assert frame["row"].tolist() == list(range(len(frame)))
    assert frame["group"].isna().all()
    assert frame["label"].dtype == np.int64


def test_image_folder_nested_and_unicode_ids(image_folder):
    ids = load_samples(str(image_folder)).frame["sample_id"].tolist()
    # relative posix paths, unicode and spaces kept, nested files under their class
    assert ids == [
        "cat/img 0.png", "cat/img 1.png", "cat/img 2.png", "cat/img 3.png",
        "dog/img 0.png", "dog/img 1.png", "dog/img 2.png", NESTED_IMAGE,
        "고양이 사진/img 0.png", "고양이 사진/img 1.png",
        "고양이 사진/img 2.png", "고양이 사진/img 3.png",
    ]  # fmt: skip


def test_image_folder_reports_ignored_files(image_folder):
    (image_folder / "cat" / "notes.txt").write_text("labelling notes")
    (image_folder / "dog" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (image_folder / "cat" / "Thumbs.db").write_bytes(b"x")
    (image_folder / "README.md").write_text("readme")
    (image_folder / "empty class").mkdir()
    (image_folder / "only text").mkdir()
    (image_folder / "only text" / "a.csv").write_text("a,b\n")
    (image_folder / ".hidden_dir").mkdir()
    make_image(image_folder / ".hidden_dir" / "x.png")
    table = load_samples(image_folder)
    assert table.classes == IMAGE_FOLDER_CLASSES  # the empty folders are not classes
    assert len(table) == 3 * IMAGES_PER_CLASS
    ignored = dict(table.ignored)
    assert set(ignored) == {
        str(image_folder / "cat" / "notes.txt"),
        str(image_folder / "dog" / ".DS_Store"),
        str(image_folder / "cat" / "Thumbs.db"),
        str(image_folder / "README.md"),
        str(image_folder / "empty class"),
        str(image_folder / "only text"),
    }
    assert "extension '.txt'" in ignored[str(image_folder / "cat" / "notes.txt")]
    assert "hidden or system" in ignored[str(image_folder / "dog" / ".DS_Store")]
    assert "system" in ignored[str(image_folder / "cat" / "Thumbs.db")]
    assert "outside any class folder" in ignored[str(image_folder / "README.md")]
    assert "no images" in ignored[str(image_folder / "empty class")]
    assert "no images" in ignored[str(image_folder / "only text")]


def test_loose_image_next_to_class_folders_is_ignored(image_folder):
    loose = make_image(image_folder / "stray.png")
    table = load_samples(image_folder)
    assert "stray.png" not in table.frame["sample_id"].tolist()
    assert dict(table.ignored)[str(loose)] == "file outside any class folder"


def test_unlabelled_folder(tmp_path):
    root = tmp_path / "test"
    for name in ["b.png", "a.jpg", "c d.png"]:
        make_image(root / name)
    (root / "notes.txt").write_text("x")
    table = load_samples(root)
    frame = table.frame
    assert frame["sample_id"].tolist() == ["a.jpg", "b.png", "c d.png"]
    assert (frame["label"] == -1).all()
    assert frame["class_name"].isna().all()
    assert table.classes == [] and not table.labelled and table.num_classes == 0
    assert dict(table.ignored) == {str(root / "notes.txt"): "extension '.txt' is not an image type"}
    assert table.class_counts().empty


def test_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"No images found in .*one sub-folder per class"):
        from_folder(tmp_path)


# ---------------------------------------------------------------- CSV index


@pytest.fixture
def csv_root(tmp_path) -> Path:
    """A competition-style folder: train/ and test/ images next to the CSV files."""
    root = tmp_path / "competition"
    for i in range(6):
        make_image(root / "train" / f"{i:03d}.png", color=(i * 40, 0, 0))
    for i in range(3):
        make_image(root / "test" / f"t{i}.png", color=(0, i * 40, 0))
    return root


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_sketch_competition_layout(csv_root):
    csv = _write_csv(
        csv_root / "train.csv",
        "class_name,image_path,target\n"
        "zebra,./train/000.png,2\n"
        "apple,train/001.png,0\n"
        "mango,train/002.png,1\n"
        "zebra,train/003.png,2\n"
        "apple,train\\004.png,0\n",  # Windows separator is accepted
    )
    table = load_samples(csv)
    assert table.classes == ["apple", "mango", "zebra"]  # ordered by target, not by name
    frame = table.frame
    assert frame["label"].tolist() == [2, 0, 1, 2, 0]
    assert frame["class_name"].tolist() == ["zebra", "apple", "mango", "zebra", "apple"]
    assert frame["sample_id"].tolist() == [f"train/{i:03d}.png" for i in range(5)]
    assert frame["path"].tolist() == [str(csv_root / "train" / f"{i:03d}.png") for i in range(5)]
    assert frame["row"].tolist() == list(range(5))
    assert table.labelled and table.root == csv_root
    assert table.source == str(csv)
    assert list(table.extra.columns) == []


def test_csv_target_numbering_is_kept_with_gaps(csv_root):
    csv = _write_csv(
        csv_root / "t.csv", "image_path,target,class_name\ntrain/000.png,3,d\ntrain/001.png,0,a\n"
    )
    table = load_samples(csv)
    assert table.classes == ["a", "1", "2", "d"]  # unseen targets keep their index
    assert table.frame["label"].tolist() == [3, 0]


def test_csv_class_name_only(csv_root):
    csv = _write_csv(
        csv_root / "c.csv",
        "image_path,class_name\n"
        "train/000.png,개\ntrain/001.png, cat \ntrain/002.png,bird\ntrain/003.png,cat\n",
    )
    table = load_samples(csv)
    assert table.classes == ["bird", "cat", "개"]
    assert table.frame["label"].tolist() == [2, 1, 0, 1]
    assert table.frame["class_name"].tolist() == ["개", "cat", "bird", "cat"]


def test_csv_target_only(csv_root):
    csv = _write_csv(
        csv_root / "t.csv",
        "image_path,target\ntrain/000.png,2\ntrain/001.png,0\ntrain/002.png, 1 \n",
    )
    table = load_samples(csv)
    assert table.classes == ["0", "1", "2"]
    assert table.frame["label"].tolist() == [2, 0, 1]
    assert table.frame["class_name"].tolist() == ["2", "0", "1"]


def test_csv_unlabelled_test_set_keeps_id_column(csv_root):
    csv = _write_csv(
        csv_root / "test.csv", "ID,image_path\nz9,test/t2.png\na1,test/t0.png\nm5,test/t1.png\n"
    )
    table = load_samples(csv)
    assert not table.labelled and table.classes == []
    assert (table.frame["label"] == -1).all()
    assert table.frame["class_name"].isna().all()
    assert table.frame["sample_id"].tolist() == ["test/t2.png", "test/t0.png", "test/t1.png"]
    assert list(table.extra.columns) == ["ID"]
    assert table.extra["ID"].tolist() == ["z9", "a1", "m5"]  # CSV order, as strings


def test_csv_utf8_bom_tsv_and_padded_header(csv_root):
    csv = csv_root / "bom.tsv"
    csv.write_bytes("\ufeffimage_path\t class_name \ntrain/000.png\ta\n".encode())
    table = load_samples(csv)
    assert table.classes == ["a"] and len(table) == 1


def test_csv_absolute_path_inside_root_is_allowed(csv_root):
    inside = csv_root / "train" / "000.png"
    csv = _write_csv(csv_root / "abs.csv", f"image_path,target\n{inside},0\n")
    assert load_samples(csv).frame["sample_id"].tolist() == ["train/000.png"]


def test_csv_group_column(csv_root):
    csv = _write_csv(
        csv_root / "g.csv",
        "image_path,target,group\ntrain/000.png,0,p1\ntrain/001.png,1,\ntrain/002.png,0,p1\n",
    )
    table = load_samples(csv)
    group = table.frame["group"].tolist()
    assert group[0] == "p1" and group[2] == "p1" and pd.isna(group[1])
    assert "group" not in table.extra.columns


def test_csv_empty_group_is_none(csv_root):
    # "None = the sample alone", as in tables built without a group column.
    csv = _write_csv(csv_root / "g.csv", "image_path,group\ntrain/000.png,p1\ntrain/001.png,\n")
    frame = load_samples(csv).frame
    assert frame["group"].dtype == object
    assert frame["group"].tolist() == ["p1", None]


@pytest.mark.parametrize(
    "text,match",
    [
        ("path,label\ntrain/000.png,0\n",
         r"has no 'image_path' column\. Columns found: path, label"),
        ("image_path,target\n", r"has no rows"),
        ("image_path,target\ntrain/000.png,0\ntrain/nope.png,1\n",
         r"1 listed image file\(s\) do not exist.*\n  - line 3: .*train/nope\.png"),
        ("image_path,target\ntrain/000.png,0\n../outside.png,1\n",
         r"point outside the dataset folder.*\n  - line 3: \.\./outside\.png"),
        ("image_path,target\ntrain/../../x.png,0\n", r"outside the dataset folder"),
        ("image_path,target\ntrain/000.png,0\n,1\n", r"empty image_path on line\(s\):\n  - line 3"),
        ("image_path,target\ntrain/000.png,0\ntrain/001.png,1\ntrain/000.png,0\n",
         r"listed more than once:\n  - line 2: train/000\.png\n  - line 4: train/000\.png"),
        ("image_path,target\ntrain/000.png,0\n./train/000.png,0\n", r"listed more than once"),
        ("image_path,class_name,target\ntrain/000.png,cat,0\ntrain/001.png,cat,0\ntrain/002.png,cat,1\n",
         r"disagree:\n  - line 4: class_name='cat' target=1"),
        ("image_path,class_name,target\ntrain/000.png,cat,0\ntrain/001.png,dog,0\ntrain/002.png,dog,0\n",
         r"disagree:\n  - line 2: class_name='cat' target=0"),
        ("image_path,target\ntrain/000.png,0\ntrain/001.png,one\n",
         r"non-negative integer class index:\n  - line 3: target='one'"),
        ("image_path,target\ntrain/000.png,1.5\n", r"line 2: target='1\.5'"),
        ("image_path,target\ntrain/000.png,-1\n", r"line 2: target='-1'"),
        ("image_path,target\ntrain/000.png,\n", r"line 2: target=''"),
        ("image_path,class_name\ntrain/000.png,a\ntrain/001.png,\n",
         r"empty class_name on line\(s\):\n  - line 3"),
    ],
    ids=["no-image_path", "no-rows", "missing-file", "dotdot", "dotdot-nested", "empty-path",
         "duplicate", "duplicate-normalised", "name-target-mismatch", "target-name-mismatch",
         "non-int-target", "float-target", "negative-target", "blank-target", "empty-class_name"],
)  # fmt: skip
def test_csv_errors(csv_root, text, match):
    csv = _write_csv(csv_root / "bad.csv", text)
    with pytest.raises(DataError, match=match) as info:
        load_samples(csv)
    assert str(csv) in str(info.value)


def test_csv_absolute_path_outside_root(csv_root, tmp_path):
    outside = make_image(tmp_path / "elsewhere" / "x.png")
    csv = _write_csv(csv_root / "abs.csv", f"image_path,target\ntrain/000.png,0\n{outside},1\n")
    with pytest.raises(DataError, match=rf"outside the dataset folder.*\n  - line 3: {outside}"):
        load_samples(csv)


def test_csv_sibling_folder_with_root_prefix_is_outside(csv_root):
    # '/data/competition2' starts with '/data/competition' but is not inside it.
    sibling = make_image(csv_root.parent / (csv_root.name + "2") / "x.png")
    csv = _write_csv(csv_root / "s.csv", f"image_path\n../{csv_root.name}2/x.png\n")
    assert sibling.is_file()
    with pytest.raises(DataError, match="outside"):
        load_samples(csv)


def test_missing_file_list_is_capped(csv_root):
    rows = "".join(f"train/gone{i}.png,0\n" for i in range(25))
    csv = _write_csv(csv_root / "many.csv", "image_path,target\n" + rows)
    with pytest.raises(
        DataError, match=r"(?s)25 listed image file\(s\) do not exist.*\.\.\. and 15 more"
    ):
        load_samples(csv)


def test_unparseable_csv(csv_root):
    csv = csv_root / "latin1.csv"
    csv.write_bytes("image_path,class_name\ntrain/000.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="Cannot parse .* as CSV"):
        load_samples(csv)


# ------------------------------------------------------------ other sources


def test_unknown_dataset_lists_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        DataError,
        match=r"'no-such-data' not found.*built-in dataset \(digits, digits-domains, "
        r"fashion-mnist, fashion-mnist-domains\)",
    ):
        load_samples("no-such-data")


def test_non_csv_file_is_rejected(tmp_path):
    path = make_image(tmp_path / "one.png")
    with pytest.raises(DataError, match="is a file but not a CSV index"):
        load_samples(path)


def test_builtin_bad_split():
    with pytest.raises(DataError, match=r"split must be 'train' or 'test', got 'digits:valid'"):
        load_samples("digits:valid")


def test_digits_builtin():
    train, test = load_samples("digits"), load_samples("digits:test")
    assert len(train) + len(test) == 1797
    assert len(test) == 360  # the fixed stratified 20 %
    for table, split in ((train, "train"), (test, "test")):
        assert table.classes == [str(i) for i in range(10)]
        assert table.source == f"digits:{split}"
        assert list(table.frame.columns) == COLUMNS
        assert table.frame["path"].str.startswith(f"builtin://digits/{split}/").all()
        assert table.frame["sample_id"].iloc[0] == f"{split}/00000"
        assert (table.class_counts() > 0).all() and table.labelled
    assert set(train.frame["sample_id"]).isdisjoint(test.frame["sample_id"])  # ids carry the split
    assert set(train.frame["path"]).isdisjoint(set(test.frame["path"]))
    arr = load_image(train.frame["path"].iloc[0], channels=1)
    assert arr.shape == (8, 8, 1) and arr.dtype == np.uint8
    assert load_image(train.frame["path"].iloc[0], channels=3).shape == (8, 8, 3)
    assert 0 < arr.max() <= 255


def test_digits_pixels_match_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    table = load_samples("digits:test")
    data = builtin.load_split("digits", "test")
    row = table.frame.iloc[7]
    arr = load_image(row["path"], channels=1)[:, :, 0]
    assert np.array_equal(arr, data.images[7])
    matches = [
        i
        for i in range(len(bunch.images))
        if np.array_equal(np.rint(bunch.images[i] * 255 / 16).astype(np.uint8), arr)
    ]
    assert matches and any(bunch.target[i] == row["label"] for i in matches)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: zero, zero, type 0x08 (ubyte), ndim, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """Small fake Fashion-MNIST IDX files in $ENSEMBLECV_DATA/fashion-mnist; returns the arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 20), ("t10k", 6)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        _write_idx(tmp_path / "fashion-mnist" / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / "fashion-mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[prefix] = (images, labels)
    monkeypatch.setenv("ENSEMBLECV_DATA", str(tmp_path))
    builtin._cached_split.cache_clear()
    yield arrays
    builtin._cached_split.cache_clear()


def test_fake_idx_headers_are_valid(fake_fashion, tmp_path):
    raw = gzip.decompress((tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[:4], "big") == 0x00000803
    raw = gzip.decompress((tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[:4], "big") == 0x00000801


def test_fashion_mnist_from_env_dir(fake_fashion):
    assert builtin.fashion_mnist_available()
    table = load_samples("fashion-mnist")
    images, labels = fake_fashion["train"]
    assert len(table) == 20
    assert table.classes == builtin.FASHION_MNIST_CLASSES and len(table.classes) == 10
    assert table.frame["label"].tolist() == labels.tolist()
    assert table.frame["path"].iloc[3] == "builtin://fashion-mnist/train/00003"
    arr = load_image(table.frame["path"].iloc[3], channels=1)
    assert arr.shape == (28, 28, 1)
    assert np.array_equal(arr[:, :, 0], images[3])
    rgb = load_image(table.frame["path"].iloc[3], channels=3)
    assert rgb.shape == (28, 28, 3) and np.array_equal(rgb[:, :, 1], images[3])
    test = load_samples("fashion-mnist:test")
    assert len(test) == 6
    assert np.array_equal(
        load_image(test.frame["path"].iloc[5], channels=1)[:, :, 0], fake_fashion["t10k"][0][5]
    )


def test_fashion_mnist_uncompressed_and_raw_layout(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    images = np.full((3, 28, 28), 7, dtype=np.uint8)
    for stem, arr in (
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", np.array([1, 2, 3])),
    ):
        _write_idx(raw / f"{stem}.gz", arr)
        (raw / stem).write_bytes(gzip.decompress((raw / f"{stem}.gz").read_bytes()))
        (raw / f"{stem}.gz").unlink()
    monkeypatch.setenv("ENSEMBLECV_DATA", str(tmp_path))
    builtin._cached_split.cache_clear()
    try:
        table = load_samples("fashion-mnist")
        assert table.frame["label"].tolist() == [1, 2, 3]
        assert table.frame["class_name"].tolist() == ["Trouser", "Pullover", "Dress"]
    finally:
        builtin._cached_split.cache_clear()


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (lambda raw: b"\x01" + raw[1:], "bad magic number"),
        (lambda raw: raw[:2] + b"\x0b" + raw[3:], "only unsigned-byte IDX"),
        (lambda raw: raw[:-10], "is truncated: expected 15680 values, got 15670"),
    ],
    ids=["magic", "dtype", "truncated"],
)
def test_fashion_mnist_broken_idx(fake_fashion, tmp_path, corrupt, match):
    path = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(corrupt(gzip.decompress(path.read_bytes()))))
    with pytest.raises(DataError, match=match):
        load_samples("fashion-mnist")


def test_fashion_mnist_label_count_mismatch(fake_fashion, tmp_path):
    _write_idx(
        tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8)
    )
    with pytest.raises(DataError, match="Fashion-MNIST train: 20 images but 19 labels"):
        load_samples("fashion-mnist")


# -------------------------------------------------------------- SampleTable


def test_class_counts_and_subset(image_folder):
    table = load_samples(image_folder)
    counts = table.class_counts()
    assert counts.index.tolist() == IMAGE_FOLDER_CLASSES
    assert counts.tolist() == [IMAGES_PER_CLASS] * 3
    assert counts.name == "images"
    mask = (table.frame["class_name"] != "dog").to_numpy().copy()
    mask[0] = False  # also drop one cat
    sub = table.subset(mask)
    assert isinstance(sub, SampleTable)
    assert sub.classes == table.classes  # class indices stay valid
    assert sub.class_counts().tolist() == [IMAGES_PER_CLASS - 1, 0, IMAGES_PER_CLASS]
    assert len(sub) == 2 * IMAGES_PER_CLASS - 1
    assert sub.frame.index.tolist() == list(range(len(sub)))
    assert sub.frame["sample_id"].tolist() == table.frame["sample_id"][mask].tolist()
    assert sub.frame["row"].tolist() == table.frame["row"][mask].tolist()  # source rows kept
    assert sub.source == table.source and sub.root == table.root
    sub.classes.append("changed")
    assert table.classes == IMAGE_FOLDER_CLASSES  # copies, not shared lists


def test_subset_keeps_extra_aligned(csv_root):
    csv = _write_csv(
        csv_root / "test.csv", "ID,image_path\nz9,test/t2.png\na1,test/t0.png\nm5,test/t1.png\n"
    )
    table = load_samples(csv)
    sub = table.subset([True, False, True])
    assert sub.extra["ID"].tolist() == ["z9", "m5"]
    assert sub.extra.index.tolist() == [0, 1]
    assert sub.frame["sample_id"].tolist() == ["test/t2.png", "test/t1.png"]
    assert len(table.subset(np.zeros(3, dtype=bool))) == 0


def test_labelled_is_false_for_empty_table(image_folder):
    table = load_samples(image_folder)
    assert not table.subset(np.zeros(len(table), dtype=bool)).labelled


def test_class_counts_ignores_unlabelled_rows():
    frame = pd.DataFrame(
        {"sample_id": ["a", "b", "c"], "path": ["a", "b", "c"], "label": [1, -1, 1],
         "class_name": ["y", None, "y"], "group": [None] * 3, "row": [0, 1, 2]}
    )  # fmt: skip
    table = SampleTable(frame, ["x", "y", "z"], "memory")
    assert table.class_counts().to_dict() == {"x": 0, "y": 2, "z": 0}
    assert not table.labelled
