"""Every data source becomes one table of samples.

Columns of :attr:`SampleTable.frame`:

``sample_id``  stable string id (path relative to the dataset root, or
               ``split/index`` for built-ins) — the key that folds, runs and
               predictions are aligned by, so it must not depend on the machine;
``path``       absolute file path, or a ``builtin://`` virtual path;
``label``      integer class index into :attr:`SampleTable.classes`, -1 if unlabelled;
``class_name`` class name, or None if unlabelled;
``group``      samples that must stay in one fold (None = the sample alone);
``row``        position in the source (CSV row order is kept for submissions);
``domain``     only in multi-domain data (see :mod:`.domains`): the sample's domain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, format_list
from . import builtin
from .sample_table import COLUMNS, SampleTable, from_folder

__all__ = ["COLUMNS", "SampleTable", "from_builtin", "from_csv", "from_folder", "load_samples"]


def load_samples(source: str | os.PathLike, layout: str = "imagefolder") -> SampleTable:
    """Build the sample table from a folder, a CSV index or a built-in dataset name.

    ``layout="domains"`` reads a folder as ``ROOT/DOMAIN/CLASS/image``; the default
    ImageFolder reader would take the domains for classes.
    """
    if layout not in ("imagefolder", "domains"):
        raise DataError(f"Unknown data layout {layout!r}; choose imagefolder or domains.")
    text = str(source)
    parsed = builtin.parse_builtin(text)
    if parsed is not None:
        return from_builtin(*parsed)
    path = Path(text).expanduser()
    if path.is_dir():
        if layout == "domains":
            from .domains import from_domain_folder

            return from_domain_folder(path)
        return from_folder(path)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        return from_csv(path)
    if path.is_file():
        raise DataError(
            f"{path} is a file but not a CSV index; give a folder, a .csv or a built-in name."
        )
    raise DataError(
        f"Dataset {text!r} not found: it is neither an existing folder, a CSV file nor a "
        f"built-in dataset ({', '.join(builtin.list_datasets())})."
    )


def from_builtin(name: str, split: str = "train") -> SampleTable:
    data = builtin.load_split(name, split)
    n = len(data.labels)
    labels = data.labels.astype(np.int64)
    frame = pd.DataFrame(
        {
            "sample_id": [f"{split}/{i:05d}" for i in range(n)],
            "path": [builtin.virtual_path(name, split, i) for i in range(n)],
            "label": labels,
            "class_name": [data.classes[i] for i in labels],
            "group": pd.Series([None] * n, dtype=object),
            "row": np.arange(n),
        }
    )
    if data.domains is not None:
        frame["domain"] = pd.Series(list(data.domains), dtype=object)
    return SampleTable(frame, list(data.classes), f"{name}:{split}")


def from_csv(csv_path: str | os.PathLike) -> SampleTable:
    """CSV index: ``image_path`` plus ``class_name`` and/or ``target``; optional ``group``, ``domain``.

    Paths are relative to the CSV's folder and must stay inside it. Every other
    column (``ID`` ...) is kept in :attr:`SampleTable.extra` for submissions.
    """
    csv_path = Path(csv_path).expanduser().absolute()
    sep = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(csv_path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"Cannot parse {csv_path} as CSV: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    if "image_path" not in df.columns:
        raise DataError(
            f"{csv_path} has no 'image_path' column. Columns found: {', '.join(df.columns)}. "
            "A CSV index needs 'image_path' plus 'class_name' and/or 'target' (or neither, "
            "for an unlabelled test set)."
        )
    if df.empty:
        raise DataError(f"{csv_path} has no rows.")
    root = csv_path.parent
    line = np.arange(len(df)) + 2  # 1-based line numbers in the file, header is line 1
    paths, sample_ids, problems = _resolve_csv_paths(df["image_path"], root, line)
    if problems["escape"]:
        raise DataError(
            f"{csv_path}: {len(problems['escape'])} image_path value(s) point outside the "
            f"dataset folder {root}:\n{format_list(problems['escape'])}"
        )
    if problems["empty"]:
        raise DataError(
            f"{csv_path}: empty image_path on line(s):\n{format_list(problems['empty'])}"
        )
    dup = pd.Series(sample_ids).duplicated(keep=False).to_numpy()
    if dup.any():
        items = [f"line {ln}: {sid}" for ln, sid in zip(line[dup], np.array(sample_ids)[dup])]
        raise DataError(
            f"{csv_path}: the same image is listed more than once:\n{format_list(items)}"
        )
    missing = [f"line {ln}: {p}" for ln, p in zip(line, paths) if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{csv_path}: {len(missing)} listed image file(s) do not exist "
            f"(paths are relative to {root}):\n{format_list(missing)}"
        )
    labels, classes, names = _csv_labels(df, csv_path, line)
    group = [g.strip() or None for g in df["group"]] if "group" in df.columns else [None] * len(df)
    frame = pd.DataFrame(
        {
            "sample_id": sample_ids,
            "path": paths,
            "label": labels,
            "class_name": names,
            "group": pd.Series(list(group), dtype=object),
            "row": np.arange(len(df)),
        }
    )
    if "domain" in df.columns:
        domain = df["domain"].str.strip()
        empty = (domain == "").to_numpy()
        if empty.any():
            raise DataError(
                f"{csv_path}: empty domain on line(s):\n{format_list([f'line {ln}' for ln in line[empty]])}"
            )
        frame["domain"] = pd.Series(list(domain), dtype=object)
    label_cols = {"image_path", "class_name", "target", "group", "domain"}
    extra = df[[c for c in df.columns if c not in label_cols]].reset_index(drop=True)
    return SampleTable(frame, classes, str(csv_path), root, [], extra)


def _resolve_csv_paths(values: pd.Series, root: Path, line: np.ndarray):
    paths, ids = [], []
    problems: dict[str, list[str]] = {"escape": [], "empty": []}
    root_str = os.path.normpath(str(root))
    for ln, raw in zip(line, values):
        value = raw.strip().replace("\\", "/")
        if not value:
            problems["empty"].append(f"line {ln}")
            paths.append("")
            ids.append(f"<empty line {ln}>")
            continue
        # normpath, not resolve(): symlinked datasets are fine, '..' tricks are not.
        full = os.path.normpath(os.path.join(root_str, value))
        if os.path.commonpath([root_str, full]) != root_str:
            problems["escape"].append(f"line {ln}: {raw}")
        paths.append(full)
        ids.append(Path(os.path.relpath(full, root_str)).as_posix())
    return paths, ids, problems


def _csv_labels(df: pd.DataFrame, csv_path: Path, line: np.ndarray):
    """Labels, class order and names from ``target`` and/or ``class_name``.

    With ``target`` the class index *is* the target (so submissions keep the
    competition's numbering); names come from ``class_name`` when present.
    """
    has_t, has_c = "target" in df.columns, "class_name" in df.columns
    n = len(df)
    if not has_t and not has_c:
        return np.full(n, -1, dtype=np.int64), [], [None] * n
    if has_t:
        raw = df["target"].str.strip()
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() | (numeric < 0) | (numeric != numeric.round())
        if bad.any():
            items = [f"line {ln}: target={v!r}" for ln, v in zip(line[bad.to_numpy()], raw[bad])]
            raise DataError(
                f"{csv_path}: 'target' must be a non-negative integer class index:\n{format_list(items)}"
            )
        targets = numeric.astype(np.int64).to_numpy()
    if has_c:
        names = df["class_name"].str.strip()
        empty = (names == "").to_numpy()
        if empty.any():
            raise DataError(
                f"{csv_path}: empty class_name on line(s):\n{format_list([f'line {ln}' for ln in line[empty]])}"
            )
    if has_t and has_c:
        _check_consistent(names.to_numpy(), targets, csv_path, line)
        mapping = dict(zip(targets, names))
        classes = [mapping.get(t, str(t)) for t in range(int(targets.max()) + 1)]
        return targets, classes, list(names)
    if has_t:
        classes = [str(t) for t in range(int(targets.max()) + 1)]
        return targets, classes, [classes[t] for t in targets]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in names], dtype=np.int64), classes, list(names)


def _check_consistent(
    names: np.ndarray, targets: np.ndarray, csv_path: Path, line: np.ndarray
) -> None:
    """Each class_name must map to one target and each target to one class_name."""
    pairs = pd.DataFrame({"name": names, "target": targets, "line": line})
    bad_lines: list[str] = []
    for key, other in (("name", "target"), ("target", "name")):
        counts = pairs.groupby(key)[other].nunique()
        for value in counts[counts > 1].index:
            sub = pairs[pairs[key] == value]
            majority = sub[other].mode().iloc[0]
            for _, r in sub[sub[other] != majority].iterrows():
                bad_lines.append(
                    f"line {r['line']}: class_name={r['name']!r} target={r['target']} "
                    f"(elsewhere {key}={value!r} has {other}={majority!r})"
                )
    if bad_lines:
        raise DataError(
            f"{csv_path}: 'class_name' and 'target' disagree:\n{format_list(sorted(set(bad_lines)))}"
        )


def save_classes(classes: list[str], path: Path) -> None:
    path.write_text(json.dumps(classes, ensure_ascii=False, indent=1), encoding="utf-8")


def load_classes(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))
