"""Duplicate and near-duplicate images: find, group, clean (non-destructively), check leakage.

``find_duplicates(table)`` → :class:`DedupResult` (exact content hashes, pHash
multi-index candidates, optional embedding neighbours, SSIM-confirmed);
``write_outputs`` writes duplicates.csv / summary.json / gallery.html (and the
cleaned index with ``apply=True``); ``apply_groups`` turns duplicate groups
into fold groups; ``leakage_report`` counts validation samples with a
duplicate in their training folds.
"""

from .groups import (
    CONFLICT_POLICIES,
    DedupResult,
    apply_groups,
    build_groups,
    classes_below_k,
    cleaned_index,
    find_duplicates,
    read_duplicates,
)
from .leakage import leakage_report
from .phash import hash_images, phash_pair
from .report import write_outputs

__all__ = [
    "CONFLICT_POLICIES",
    "DedupResult",
    "apply_groups",
    "build_groups",
    "classes_below_k",
    "cleaned_index",
    "find_duplicates",
    "hash_images",
    "leakage_report",
    "phash_pair",
    "read_duplicates",
    "write_outputs",
]
