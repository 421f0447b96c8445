"""ensemblecv: train many image models, combine them into ensembles, score them honestly."""

import os as _os

# albumentations checks PyPI for updates on import (2 s timeout offline); never wanted here.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .errors import ConfigError, DataError, EnsembleCVError, ImageLoadError
from .recipes import Recipe, get_recipe, list_recipes, register_recipe

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "EnsembleCVError", "ExperimentConfig", "ImageDataset",
    "ImageLoadError", "SampleTable", "Workspace", "load_config", "load_image", "load_samples",
    "make_folds", "prepare_workspace", "scan_table", "__version__",
    "Recipe", "get_recipe", "list_recipes", "register_recipe",
]  # fmt: skip


# Lazy: the data layer pulls in pandas, numpy and PIL, torch costs seconds and the config's
# pydantic models a third of a second; `ensemblecv --help` waits for none of them, config
# validation only for pydantic (tests/test_cli_startup.py).
_FROM_DATA = ("SampleTable", "load_image", "load_samples", "scan_table")


def __getattr__(name: str):
    if name in ("ExperimentConfig", "load_config"):
        from . import config

        return getattr(config, name)
    if name in _FROM_DATA:
        from . import data

        return getattr(data, name)
    if name == "ImageDataset":
        from .data.dataset import ImageDataset

        return ImageDataset
    if name == "make_folds":
        from .data.folds import make_folds

        return make_folds
    if name in ("Workspace", "prepare_workspace"):
        from . import workspace

        return getattr(workspace, name)
    raise AttributeError(name)
