"""Models: any timm architecture by name, plus built-in small CNNs for 28–64 px images.

Importing this package registers the built-ins (``mnist_cnn``, ``cnn_small``,
``resnet_mini``) in timm's registry, so one name space serves ``model.name``.
"""

from . import small_cnns  # noqa: F401  (registers the built-in CNNs with timm)
from .factory import LoadReport, create_model, describe_model, list_models, load_weights
from .freeze import BATCHNORM_POLICIES, apply_batchnorm_policy, freezable_groups, freeze
from .input_size import (
    check_image_size,
    model_data_config,
    nearest_sizes,
    resolve_inputs,
    smallest_image_size,
)
from .mixstyle import MixStyle, attach_mixstyle, mix_statistics, stage_modules
from .small_cnns import BUILTIN_MODELS

__all__ = [
    "BATCHNORM_POLICIES",
    "BUILTIN_MODELS",
    "LoadReport",
    "MixStyle",
    "attach_mixstyle",
    "mix_statistics",
    "stage_modules",
    "apply_batchnorm_policy",
    "check_image_size",
    "create_model",
    "describe_model",
    "freezable_groups",
    "freeze",
    "list_models",
    "load_weights",
    "model_data_config",
    "nearest_sizes",
    "resolve_inputs",
    "smallest_image_size",
]
