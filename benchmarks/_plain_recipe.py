"""The small-cpu recipe as a plain PyTorch loop: the baseline of time_to_accuracy.py and the
ablation's engine (each ingredient can be switched off).

Same network (``resnet9_small``), same batch augmentation, EMA, schedule, loss and TTA
as ``recipe: small-cpu``, written the way one would by hand: tensors in RAM, a shuffled
index per epoch, no Lightning, no folds. Used by ``time_to_accuracy.py``; runnable alone::

    python benchmarks/_plain_recipe.py --n 10000 --epochs 3 [--no-ema] [--no-augment] ...
"""

from __future__ import annotations

import argparse
import json
import time


def load_fmnist(n: int | None, test_n: int | None):
    import numpy as np
    import torch

    from ensemblecv.data.builtin import load_split
    from ensemblecv.data.export import balanced_subset

    out = []
    for split, limit in (("train", n), ("test", test_n)):
        data = load_split("fashion-mnist", split)
        idx = balanced_subset(data.labels, limit) if limit else np.arange(len(data.labels))
        x = torch.from_numpy(np.ascontiguousarray(data.images[idx])).unsqueeze(1)  # uint8
        out += [x, torch.from_numpy(data.labels[idx]).long()]
    return out


def train_plain(args, on_checkpoint=None) -> dict:
    """Train on the (limited) training set; test accuracy at the end (and at ``args.checkpoints``
    minutes, of the EMA weights, through ``on_checkpoint(minutes, acc)``)."""
    import timm
    import torch
    import torch.nn.functional as F

    import ensemblecv.models  # noqa: F401  (registers resnet9_small)
    from ensemblecv.augment.batch import BatchAugment
    from ensemblecv.config import BatchAugmentConfig

    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = load_fmnist(args.n, args.test_n)
    mean, std = xtr.float().mean() / 255, xtr.float().std() / 255
    model = timm.create_model(
        "resnet9_small", num_classes=10, in_chans=1, width=args.width, drop_rate=args.drop
    )
    cl = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=cl)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0}]
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=args.lr)
    steps = args.epochs * ((len(ytr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    ema = None
    if args.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True)
    aug = BatchAugment(
        BatchAugmentConfig(
            crop_padding=args.pad, hflip=0.5 if args.flip else 0, erasing=args.erasing
        )
    )
    gen = torch.Generator().manual_seed(args.seed)

    def prep(x):
        return ((x.float() / 255 - mean) / std).contiguous(memory_format=cl)

    @torch.no_grad()
    def evaluate(net) -> float:
        net.eval()
        correct = 0
        for i in range(0, len(yte), 1024):
            x = prep(xte[i : i + 1024])
            p = net(x).softmax(1)
            if args.tta:
                p = p + net(x.flip(3)).softmax(1)
            correct += int((p.argmax(1) == yte[i : i + 1024]).sum())
        net.train()
        return correct / len(yte)

    start, cpu0, step = time.perf_counter(), time.process_time(), 0
    marks = sorted(args.checkpoints)
    for _ in range(args.epochs):
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            x = xtr[idx]
            if args.pad or args.flip or args.erasing:
                x = aug(x, gen)
            loss = F.cross_entropy(model(prep(x)), ytr[idx], label_smoothing=args.smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if ema is not None:
                ema.update(model, step=step)
            minutes = (time.perf_counter() - start) / 60
            if marks and minutes >= marks[0] and on_checkpoint is not None:
                on_checkpoint(marks.pop(0), evaluate(ema.module if ema else model))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    acc = evaluate(ema.module if ema else model)
    images = step * args.batch_size
    return {
        "test_acc": acc,
        "train_s": round(seconds, 1),
        "train_cpu_s": round(cpu, 1),
        "img_per_s": round(images / seconds, 1),
        "img_per_cpu_s": round(images / cpu, 1),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None, help="training images (default all 60000)")
    p.add_argument("--test-n", type=int, default=None, help="test images (default all 10000)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--smoothing", type=float, default=0.1)
    p.add_argument("--pad", type=int, default=2)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--erasing", type=float, default=0.5)
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--ema-decay", type=float, default=0.998)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoints", type=float, nargs="*", default=[])
    return p


if __name__ == "__main__":
    a = parser().parse_args()
    print(json.dumps({**vars(a), **train_plain(a, lambda m, acc: print(f"{m} min: {acc:.4f}"))}))
