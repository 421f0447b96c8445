"""Train one fold and SIGKILL this process at a chosen moment (for the resume tests).

``python tests/kill_driver.py CONFIG POINT`` where POINT is

- ``epoch_start:K`` — as epoch K starts: epoch K-1's checkpoints and history row are on disk
  (what an out-of-memory kill between epochs leaves);
- ``last_ckpt:K`` — as ``last.ckpt`` of epoch K is about to be written: ``best.ckpt`` already
  holds epoch K while ``last.ckpt`` and ``history.csv`` still end at epoch K-1;
- ``done`` — as ``done.json`` is about to be written: training is over and the OOF and test
  files are on disk.

The kill comes from inside the process, so it lands at exactly the same point on
a loaded machine as on an idle one.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(config_path: str, point: str) -> None:
    import lightning.pytorch as pl

    from ensemblecv.config import load_config
    from ensemblecv.training import callbacks, runner, train

    where, _, arg = point.partition(":")
    if where == "epoch_start":

        class KillAtEpoch(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == int(arg):
                    _die()

        real_callbacks = runner._callbacks
        runner._callbacks = lambda *a, **k: real_callbacks(*a, **k) + [KillAtEpoch()]
    elif where == "last_ckpt":
        real_save = callbacks.AtomicCheckpointIO.save_checkpoint

        def save(self, checkpoint, path, storage_options=None):
            if Path(path).name == "last.ckpt" and checkpoint["epoch"] == int(arg):
                _die()
            real_save(self, checkpoint, path, storage_options)

        callbacks.AtomicCheckpointIO.save_checkpoint = save
    elif where == "done":
        real_write = runner.atomic_write_text

        def write(path, text):
            if Path(path).name == "done.json":
                _die()
            real_write(path, text)

        runner.atomic_write_text = write
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    train(load_config(config_path), folds=[0], progress=False)
    raise SystemExit("the kill point was never reached")


if __name__ == "__main__":
    main(*sys.argv[1:])
