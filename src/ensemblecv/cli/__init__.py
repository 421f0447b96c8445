"""The ``ensemblecv`` command line: a thin typer layer over the Python API.

Each verb lives in a small module and only parses arguments, calls library
functions and prints. User errors (:class:`EnsembleCVError`) become a red
message and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import EnsembleCVError
from . import _console
from .augment_preview import register as _register_augment_preview
from .clean_commands import register as _register_clean
from .convert_command import register as _register_convert
from .data_commands import register as _register_data
from .dedup_commands import register as _register_dedup
from .demo import register as _register_demo
from .ensemble_commands import register as _register_ensemble
from .evaluate_command import register as _register_evaluate
from .recipes_command import register as _register_recipes
from .report_commands import register as _register_report
from .ship_commands import register as _register_ship
from .sweep_command import register as _register_sweep
from .train_command import register as _register_train

app = typer.Typer(
    name="ensemblecv",
    help="Train, compare and ensemble image classifiers with honest cross-validated scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_register_data(app)
_register_train(app)
_register_sweep(app)
_register_augment_preview(app)
_register_ensemble(app)
_register_evaluate(app)
_register_report(app)
_register_clean(app)
_register_dedup(app)
_register_demo(app)
_register_convert(app)
_register_ship(app)
_register_recipes(app)


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _console.show_warning
    try:
        app(args=argv, standalone_mode=True)
    except EnsembleCVError as exc:
        _console.error(str(exc))
        sys.exit(2)
