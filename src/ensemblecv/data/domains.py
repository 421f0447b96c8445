"""Multi-domain datasets: the DomainBed / PACS / Office-Home layout ``ROOT/DOMAIN/CLASS/image``.

The sample table of such a dataset has one more column, ``domain``. It comes from
the folder layout (``data.layout: domains``), a ``domain`` column in a CSV index,
or a built-in multi-domain set. :func:`domain_split` is the one place that splits a
table into the training domains and the unseen test domain, so the protocol's
promise — the test domain never enters training, selection or normalisation
statistics — rests on one function.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, format_list
from .sample_table import COLUMNS, SampleTable, from_folder

DOMAIN_COLUMN = "domain"


def has_domains(table: SampleTable) -> bool:
    """True when the table has a ``domain`` column with at least one value."""
    frame = table.frame
    return DOMAIN_COLUMN in frame.columns and bool(frame[DOMAIN_COLUMN].notna().any())


def list_domains(table: SampleTable) -> list[str]:
    """The domains of ``table``, sorted (the column order of every domain table)."""
    if not has_domains(table):
        return []
    return sorted(str(d) for d in table.frame[DOMAIN_COLUMN].dropna().unique())


def from_domain_folder(root: str | os.PathLike) -> SampleTable:
    """``ROOT/DOMAIN/CLASS/image``: every sub-folder of ROOT is a domain in ImageFolder layout.

    The class list is the sorted union over domains (a class missing from one
    domain is allowed here; the audit and the protocol warn about it). Sample
    ids are ``DOMAIN/CLASS/file``, so they stay unique across domains.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"Domain dataset {root} is not a folder.")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    ignored = [(str(f), "file outside any domain folder") for f in sorted(root.iterdir())
               if f.is_file()]  # fmt: skip
    parts: list[tuple[str, SampleTable]] = []
    for d in dirs:
        try:
            part = from_folder(d)
        except DataError:
            ignored.append((str(d), "folder contains no images (not used as a domain)"))
            continue
        if not part.classes:
            raise DataError(
                f"Domain folder {d} holds images but no class sub-folders; the domains layout is "
                "ROOT/DOMAIN/CLASS/image (for ROOT/CLASS/image use data.layout: imagefolder)."
            )
        parts.append((d.name, part))
        ignored += part.ignored
    if len(parts) < 2:
        raise DataError(
            f"{root} has {len(parts)} domain folder(s) with images; the domains layout "
            "ROOT/DOMAIN/CLASS/image needs at least two domains."
        )
    classes = sorted({c for _, part in parts for c in part.classes})
    index = {c: i for i, c in enumerate(classes)}
    frames = []
    for name, part in parts:
        f = part.frame.copy()
        f["sample_id"] = name + "/" + f["sample_id"]
        f["label"] = f["class_name"].map(index).astype(np.int64)
        f[DOMAIN_COLUMN] = name
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    frame["row"] = np.arange(len(frame))
    return SampleTable(frame[[*COLUMNS, DOMAIN_COLUMN]], classes, str(root), root, ignored)


def missing_classes(table: SampleTable) -> dict[str, list[str]]:
    """Per domain, the classes of the dataset that domain has no image of."""
    out = {}
    frame = table.frame
    for d in list_domains(table):
        present = set(frame.loc[frame[DOMAIN_COLUMN] == d, "class_name"])
        lacking = [c for c in table.classes if c not in present]
        if lacking:
            out[d] = lacking
    return out


def missing_classes_message(table: SampleTable) -> str | None:
    """One written list of the classes missing from some domain, or None."""
    lacking = missing_classes(table)
    if not lacking:
        return None
    items = [f"{d}: {', '.join(c)}" for d, c in lacking.items()]
    return (
        f"{len(lacking)} domain(s) lack some classes (their accuracy is on fewer classes, and a "
        f"model never sees those classes in that style):\n{format_list(items)}"
    )


def domain_split(table: SampleTable, held_out: str) -> tuple[SampleTable, SampleTable]:
    """(training domains, the held-out domain) of ``table``; same classes in both."""
    domains = list_domains(table)
    if not domains:
        raise DataError(
            "data.held_out is set but the data has no domains; use data.layout: domains for "
            "ROOT/DOMAIN/CLASS/image, a 'domain' column in the CSV index, or a built-in "
            "multi-domain set."
        )
    if held_out not in domains:
        raise DataError(
            f"data.held_out={held_out!r} is not a domain of this data; domains: {', '.join(domains)}."
        )
    is_test = (table.frame[DOMAIN_COLUMN] == held_out).to_numpy()
    return table.subset(~is_test), table.subset(is_test)
