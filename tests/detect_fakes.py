"""Detection datasets for tests: the synthetic shapes of the library plus one bad label of each kind.

``add_bad_<format>(root)`` writes the bad labels into a dataset made by
:func:`ensemblecv.tasks.detect.make_shapes_dataset` and returns what the reader
must report, as ``(file, line, reason)`` (``line`` None where the format has none).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

#: The EXIF-rotated image: stored 40×24 with a red block, shown 24×40 (orientation 6).
EXIF_STORED = (40, 24)
EXIF_RED = (5, 2, 15, 10)  # x1 y1 x2 y2 of the red block in stored pixels


def exif_image(path: Path, orientation: int = 6) -> Path:
    """A JPEG whose EXIF orientation swaps its width and height, with a red block at EXIF_RED."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", EXIF_STORED, (255, 255, 255))
    x1, y1, x2, y2 = EXIF_RED
    ImageDraw.Draw(img).rectangle([x1, y1, x2 - 1, y2 - 1], fill=(255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif.tobytes())
    return path


def _append(path: Path, lines: list[str]) -> int:
    """Append lines to a text file; returns the 1-based number of the first appended line."""
    old = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(old + lines) + "\n", encoding="utf-8")
    return len(old) + 1


def add_bad_yolo(root: Path) -> list[tuple[str, int | None, str]]:
    label = "labels/img_0001.txt"
    first = _append(
        root / label,
        [
            "0 0.95 0.5 0.3 0.2",  # x2 = 1.1: clipped
            "1 0.5 0.5 0 0.1",  # zero width
            "7 0.5 0.5 0.1 0.1",  # class 7 of 3
            "0 0.5 abc 0.1",  # not numbers
        ],
    )
    (root / "labels/ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    exif_image(root / "images/rotated.jpg")
    (root / "labels/rotated.txt").write_text("0 0.5 0.5 0.2 0.2\n", encoding="utf-8")
    return [
        (label, first, "box_outside_image"),
        (label, first + 1, "box_empty"),
        (label, first + 2, "unknown_class"),
        (label, first + 3, "malformed"),
        ("labels/ghost.txt", None, "label_without_image"),
        ("labels/rotated.txt", None, "exif_rotation"),
    ]


def add_bad_coco(root: Path) -> list[tuple[str, int | None, str]]:
    path = root / "annotations.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    first = doc["images"][0]
    w = first["width"]
    next_id = max(a["id"] for a in doc["annotations"]) + 1

    def ann(bbox, category_id=1, image_id=first["id"]):
        nonlocal next_id
        next_id += 1
        return {
            "id": next_id,
            "image_id": image_id,
            "category_id": category_id,
            "bbox": bbox,
            "iscrowd": 0,
        }

    exif_image(root / "images/rotated.jpg")
    doc["images"] += [
        {"id": 900, "file_name": "missing.png", "width": 10, "height": 10},
        # The recorded size is the stored one: boxes were drawn on the stored pixels.
        {"id": 901, "file_name": "rotated.jpg", "width": EXIF_STORED[0], "height": EXIF_STORED[1]},
    ]
    x1, y1, x2, y2 = EXIF_RED
    doc["annotations"] += [
        ann([w - 5, 2, 10, 5]),  # past the right border
        ann([3, 3, 0, 4]),  # zero width
        ann([3, 3, 4, 4], category_id=99),
        ann([1, 2]),  # malformed bbox
        ann([1, 1, 2, 2], image_id=12345),  # no such image
        ann([x1, y1, x2 - x1, y2 - y1], image_id=901),
    ]
    # A crowd region is a valid box, kept with its flag.
    doc["annotations"].append({**ann([1, 1, 6, 6]), "iscrowd": 1})
    path.write_text(json.dumps(doc), encoding="utf-8")
    rel = "annotations.json"
    return [
        (rel, None, "box_outside_image"),
        (rel, None, "box_empty"),
        (rel, None, "unknown_class"),
        (rel, None, "malformed"),
        (rel, None, "label_without_image"),  # missing.png
        (rel, None, "label_without_image"),  # image id 12345
        (rel, None, "exif_rotation"),
    ]


def _voc_object(name: str, box, difficult: int = 0) -> str:
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def add_bad_voc(root: Path) -> list[tuple[str, int | None, str]]:
    xml = root / "Annotations/bad.xml"
    Image.new("RGB", (32, 32), "gray").save(root / "JPEGImages/bad.png")
    objects = [
        _voc_object("class_0", (20, 4, 40, 10)),  # past x = 32
        _voc_object("class_1", (5, 5, 5, 9)),  # zero width
        _voc_object("zebra", (1, 1, 4, 4)),  # not in classes.txt
        _voc_object("class_2", ("abc", 1, 4, 4)),
        _voc_object("class_2", (2, 2, 9, 9), difficult=1),
    ]
    # One object a line, so each bad object has its own line number.
    xml.write_text(
        "<annotation>\n<filename>bad.png</filename>\n<size><width>32</width><height>32</height></size>\n"
        + "\n".join(objects)
        + "\n</annotation>\n",
        encoding="utf-8",
    )
    (root / "Annotations/orphan.xml").write_text(
        "<annotation><filename>orphan.png</filename>"
        + _voc_object("class_0", (1, 1, 4, 4))
        + "</annotation>",
        encoding="utf-8",
    )
    (root / "Annotations/broken.xml").write_text("<annotation><object>", encoding="utf-8")
    exif_image(root / "JPEGImages/rotated.jpg")
    (root / "Annotations/rotated.xml").write_text(
        "<annotation><filename>rotated.jpg</filename><size><width>24</width><height>40</height></size>"
        + _voc_object("class_0", (1, 1, 10, 10))
        + "</annotation>",
        encoding="utf-8",
    )
    return [
        ("Annotations/bad.xml", 4, "box_outside_image"),
        ("Annotations/bad.xml", 5, "box_empty"),
        ("Annotations/bad.xml", 6, "unknown_class"),
        ("Annotations/bad.xml", 7, "malformed"),
        ("Annotations/orphan.xml", None, "label_without_image"),
        ("Annotations/broken.xml", 1, "malformed"),
        ("Annotations/rotated.xml", None, "exif_rotation"),
    ]


def add_bad_labelme(root: Path) -> list[tuple[str, int | None, str]]:
    Image.new("RGB", (32, 32), "gray").save(root / "bad.png")

    def rect(label, points, shape_type="rectangle"):
        return {"label": label, "points": points, "shape_type": shape_type}

    shapes = [
        rect("class_0", [[30, 10], [20, 4]]),  # corners in reverse order: fine
        rect("class_1", [[2, 2], [12, 2], [12, 9], [2, 9]], "polygon"),  # 4 corners: fine
        rect("class_0", [[20, 4], [40, 10]]),  # past x = 32
        rect("class_1", [[5, 5], [5, 9]]),  # zero width
        rect("zebra", [[1, 1], [4, 4]]),  # not in classes.txt
        rect("class_2", [[1, 1], [4, 4]], "circle"),
        rect("class_2", [["a", 1], [4, 4]]),
    ]
    doc = {"shapes": shapes, "imagePath": "bad.png", "imageWidth": 32, "imageHeight": 32}
    (root / "bad.json").write_text(json.dumps(doc), encoding="utf-8")
    ghost = {"shapes": [rect("class_0", [[1, 1], [3, 3]])], "imagePath": "../nowhere/ghost.png"}
    (root / "ghost.json").write_text(json.dumps(ghost), encoding="utf-8")
    exif_image(root / "sub/rotated.jpg")
    x1, y1, x2, y2 = EXIF_RED
    rotated = {
        "shapes": [rect("class_0", [[x1, y1], [x2, y2]])],
        "imagePath": "rotated.jpg",
        "imageWidth": EXIF_STORED[0],
        "imageHeight": EXIF_STORED[1],
    }
    (root / "sub/rotated.json").write_text(json.dumps(rotated), encoding="utf-8")
    return [
        ("bad.json", 3, "box_outside_image"),
        ("bad.json", 4, "box_empty"),
        ("bad.json", 5, "unknown_class"),
        ("bad.json", 6, "unsupported_shape"),
        ("bad.json", 7, "malformed"),
        ("ghost.json", None, "label_without_image"),
        ("sub/rotated.json", None, "exif_rotation"),
    ]


ADD_BAD = {
    "yolo": add_bad_yolo,
    "coco": add_bad_coco,
    "voc": add_bad_voc,
    "labelme": add_bad_labelme,
}
