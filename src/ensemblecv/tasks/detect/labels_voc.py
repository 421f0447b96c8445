"""Pascal VOC: ``Annotations/x.xml`` per image, images in ``JPEGImages/``.

Each ``<object>`` has a ``<name>``, a ``<bndbox>`` (xmin ymin xmax ymax in
pixels) and an optional ``<difficult>`` flag, which is kept. Boxes are read as
given (no 1-based shift, like torchvision's VOC reader). The image is
``JPEGImages/<same sub-path>/<filename>``, or the file with the XML's stem;
images without an XML are background images. Classes come from
``classes.txt`` (or ``labels.txt``) when present, else from the names used, sorted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import xml.parsers.expat as expat
from pathlib import Path
from xml.sax.saxutils import escape

import pandas as pd

from ._common import (
    BadLabels,
    RawBox,
    RawImage,
    RawLabels,
    boxes_by_image,
    find_image,
    layout_key,
    list_images,
    sample_id_of,
)

ANNOTATIONS, IMAGES = "Annotations", "JPEGImages"


def is_voc(root: Path) -> bool:
    folder = root / ANNOTATIONS
    return folder.is_dir() and next(folder.rglob("*.xml"), None) is not None


def _text(node, tag: str) -> str | None:
    found = node.find(tag)
    return None if found is None or found.text is None else found.text.strip()


def _class_list(root: Path) -> list[str] | None:
    for name in ("classes.txt", "labels.txt"):
        path = root / name
        if path.is_file():
            return [
                line.strip()
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
    return None


def _parse(xml: Path, bad: BadLabels):
    """``(filename, recorded size, objects)`` or None when the file is not VOC XML.

    Parsed with expat directly (not ``ET.parse``) to know the line of every
    ``<object>``, so a bad one is reported with its line.
    """
    builder, lines = ET.TreeBuilder(), {}
    parser = expat.ParserCreate()

    def start(tag, attrs):
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(xml.read_bytes(), True)
        node = builder.close()
    except (expat.ExpatError, AssertionError) as exc:  # TreeBuilder asserts on an unclosed tree
        bad.add(xml, getattr(exc, "lineno", None), "malformed", f"not valid XML: {exc}")
        return None
    size = None
    try:
        w, h = int(float(_text(node, "size/width"))), int(float(_text(node, "size/height")))
        size = (w, h) if w > 0 and h > 0 else None
    except (TypeError, ValueError):
        pass
    objects = []
    for obj in node.iter("object"):
        line = lines.get(obj)
        name = _text(obj, "name")
        try:
            coords = [float(_text(obj, f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            bad.add(
                xml, line, "malformed", f"object {name!r}: bndbox needs numeric xmin ymin xmax ymax"
            )
            continue
        if not name:
            bad.add(xml, line, "malformed", "object without a <name>")
            continue
        flags = [_text(obj, tag) in ("1", "true", "True") for tag in ("difficult", "iscrowd")]
        objects.append((name, coords, flags[0], flags[1], line))
    return _text(node, "filename"), size, objects


def read_voc(root: Path) -> RawLabels:
    root = Path(root)
    bad = BadLabels(root)
    classes = _class_list(root)
    parsed = []
    for xml in sorted((root / ANNOTATIONS).rglob("*.xml")):
        result = _parse(xml, bad)
        if result is None:
            continue
        filename, size, objects = result
        sub = xml.parent.relative_to(root / ANNOTATIONS)
        folder = root / IMAGES / sub
        image = (
            folder / filename
            if filename and (folder / filename).is_file()
            else find_image(folder, xml.stem)
        )
        if image is None:
            bad.add(
                xml,
                None,
                "label_without_image",
                f"no {filename or xml.stem + '.*'} in "
                + f"{IMAGES}/{sub.as_posix()}".removesuffix("/."),
            )
            continue
        parsed.append((xml, image, size, objects))
    if classes is None:
        classes = sorted({name for *_, objects in parsed for name, *_ in objects})
    label_of = {name: i for i, name in enumerate(classes)}
    images, boxes, labelled = [], [], set()
    for xml, image, size, objects in parsed:
        sample_id = sample_id_of(image, root)
        if sample_id in labelled:
            bad.add(xml, None, "malformed", f"a second annotation file for {sample_id}; ignored")
            continue
        labelled.add(sample_id)
        images.append(RawImage(sample_id, image, xml, size))
        for name, coords, difficult, crowd, line in objects:
            if name not in label_of:
                bad.add(xml, line, "unknown_class", f"{name!r} is not in classes.txt")
                continue
            boxes.append(RawBox(sample_id, label_of[name], *coords, file=xml, line=line,
                                iscrowd=crowd, difficult=difficult))  # fmt: skip
    for image in list_images(root / IMAGES):
        sample_id = sample_id_of(image, root)
        if sample_id not in labelled:
            images.append(RawImage(sample_id, image))
            labelled.add(sample_id)
    return RawLabels(root, "voc", classes, images, boxes, bad)


def _number(value: float) -> str:
    """Integers as integers (what VOC tools expect), fractions kept to 4 decimals (lossless)."""
    rounded = round(float(value), 4)
    # Not "%g": its 6 significant digits would round 1234.5678 to 1234.57.
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.4f}".rstrip("0")


def write_voc(
    images: pd.DataFrame, boxes: pd.DataFrame, classes: list[str], out: Path, place
) -> None:
    """``out/JPEGImages/<key>``, ``out/Annotations/<key>.xml`` and ``out/classes.txt``.

    A crowd box is written with an extra ``<iscrowd>1</iscrowd>`` (VOC has no
    such flag; VOC tools ignore unknown tags), so COCO → VOC → COCO keeps it.
    Background images get an XML with no object, so the class-less image is kept.
    """
    by_image = boxes_by_image(boxes)
    for row in images.itertuples(index=False):
        key = layout_key(row.sample_id)
        dest = out / IMAGES / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        place(row.path, dest)
        objects = []
        group = by_image.get(row.sample_id)
        for b in group or []:
            crowd = "<iscrowd>1</iscrowd>" if b.iscrowd else ""
            objects.append(
                f"<object><name>{escape(b.class_name)}</name><pose>Unspecified</pose>"
                f"<truncated>0</truncated><difficult>{int(b.difficult)}</difficult>{crowd}"
                f"<bndbox><xmin>{_number(b.x1)}</xmin><ymin>{_number(b.y1)}</ymin>"
                f"<xmax>{_number(b.x2)}</xmax><ymax>{_number(b.y2)}</ymax></bndbox></object>"
            )
        xml = (out / ANNOTATIONS / key).with_suffix(".xml")
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(
            f"<annotation><folder>{IMAGES}</folder><filename>{escape(key.name)}</filename>"
            f"<size><width>{int(row.width)}</width><height>{int(row.height)}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{''.join(objects)}</annotation>\n",
            encoding="utf-8",
        )
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


__all__ = ["is_voc", "read_voc", "write_voc"]
