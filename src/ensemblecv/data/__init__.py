"""Data layer: every source becomes a :class:`SampleTable`; one loader decodes every image."""

from .builtin import list_datasets
from .domains import domain_split, from_domain_folder, list_domains
from .imageio import load_image, open_image
from .samples import SampleTable, from_csv, from_folder, load_samples
from .scan import ScanResult, exclude_bad, scan_table

__all__ = [
    "ImageDataset", "SampleTable", "ScanResult", "domain_split", "exclude_bad", "from_csv",
    "from_domain_folder", "from_folder", "list_domains",
    "list_datasets", "load_folds", "load_image", "load_samples", "make_folds", "open_image",
    "scan_table",
]  # fmt: skip


def __getattr__(name: str):
    # ImageDataset pulls in torch; keep `import ensemblecv.data` light for scan workers.
    if name == "ImageDataset":
        from .dataset import ImageDataset

        return ImageDataset
    if name in ("load_folds", "make_folds"):  # sklearn import costs ~1 s per worker
        from . import folds

        return getattr(folds, name)
    raise AttributeError(name)
