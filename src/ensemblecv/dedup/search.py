"""Candidate pairs that scale, SSIM confirmation and grouping that does not chain.

Never all pairs: exact copies meet through their content hash, near copies
through a multi-index over the 64-bit pHash (4 bands of 16 bits: by the
pigeonhole principle two hashes within distance ≤ 3 always share a band;
between 4 and the default 6 a pair whose differing bits touch all four bands
is missed — the price of never comparing all pairs), and
embedding neighbours
through blocked top-k matrix products. Only candidate pairs are compared
pixel by pixel (SSIM; for resized copies, SSIM with one side blurred).
Groups: exact copies transitively, near pairs by complete linkage
(:func:`cluster_pairs`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..data.groups import union_find
from .phash import hamming, load_thumbnails

BANDS = 4
#: Gaussian sigmas (pixels of a 32×32 thumbnail) that stand in for a shrink-and-enlarge.
RESIZE_SIGMAS = (1.0, 1.5)
#: Largest mean absolute difference (grey levels) of 8×8 block means for a resize candidate.
RESIZE_MAX_COARSE_DIFF = 10.0
_MAX_BUCKET = 4000  # a band value shared by more images is too common to index on


def _bucket_pairs(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(P, 2) pairs of entry positions sharing a key (i < j by position)."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, len(k)])
    out = []
    for s, m in zip(starts[sizes > 1], sizes[sizes > 1]):
        if m > _MAX_BUCKET:
            continue
        members = order[s : s + m]
        a, b = np.triu_indices(m, 1)
        out.append(np.stack([members[a], members[b]], 1))
    return np.concatenate(out) if out else np.empty((0, 2), dtype=np.int64)


def phash_candidates(
    phash: np.ndarray,
    phash_flip: np.ndarray | None = None,
    max_distance: int = 6,
) -> pd.DataFrame:
    """Pairs ``i < j`` with pHash distance ≤ ``max_distance`` (min over the mirror when given).

    Returns columns ``i, j, distance, flipped`` (flipped: the match needed a mirror).
    """
    n = len(phash)
    hashes = [phash] if phash_flip is None else [phash, phash_flip]
    entry_hash = np.concatenate(hashes)
    entry_img = np.tile(np.arange(n), len(hashes))
    entry_flip = np.repeat(np.arange(len(hashes)), n)
    found: list[np.ndarray] = []
    for band in range(BANDS):
        keys = (entry_hash >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        pairs = _bucket_pairs(keys, entry_img)
        if not len(pairs):
            continue
        a, b = pairs[:, 0], pairs[:, 1]
        # one side must be un-mirrored (two mirrors compare like two originals)
        keep = (entry_img[a] != entry_img[b]) & ((entry_flip[a] == 0) | (entry_flip[b] == 0))
        a, b = a[keep], b[keep]
        d = hamming(entry_hash[a], entry_hash[b])
        ok = d <= max_distance
        i, j = entry_img[a][ok], entry_img[b][ok]
        flipped = (entry_flip[a][ok] + entry_flip[b][ok]) > 0
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        found.append(np.stack([lo, hi, d[ok], flipped.astype(np.int64)], 1))
    if not found:
        return pd.DataFrame({"i": [], "j": [], "distance": [], "flipped": []}, dtype=np.int64)
    allp = np.concatenate(found)
    df = pd.DataFrame(allp, columns=["i", "j", "distance", "flipped"])
    df = df.sort_values(["i", "j", "distance", "flipped"]).drop_duplicates(["i", "j"])
    return df.reset_index(drop=True)


def exact_pairs(content: np.ndarray) -> pd.DataFrame:
    """Pairs (first member, other member) of images with the same content hash."""
    s = pd.Series(content)
    s = s[s.astype(str) != ""]
    rows = []
    for _, idx in s.groupby(s.to_numpy()).groups.items():
        idx = np.sort(np.asarray(idx))
        rows += [(int(idx[0]), int(k)) for k in idx[1:]]
    return pd.DataFrame(rows, columns=["i", "j"], dtype=np.int64)


def embedding_candidates(
    emb: np.ndarray, min_cosine: float, top_k: int = 5, block: int = 2048
) -> pd.DataFrame:
    """Pairs ``i < j`` among each image's ``top_k`` cosine neighbours with cosine ≥ ``min_cosine``.

    ``emb`` must be L2-normalised; memory is ``block × N`` floats at a time.
    """
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    k = min(top_k + 1, n)
    rows = []
    for start in range(0, n, block):
        sims = emb[start : start + block] @ emb.T
        r = np.arange(len(sims))
        sims[r, start + r] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        val = np.take_along_axis(sims, top, 1)
        ii, cc = np.nonzero(val >= min_cosine)
        rows.append(np.stack([start + ii, top[ii, cc], val[ii, cc]], 1))
    if not rows:
        return pd.DataFrame({"i": [], "j": [], "cosine": []})
    arr = np.concatenate(rows)
    df = pd.DataFrame(
        {
            "i": np.minimum(arr[:, 0], arr[:, 1]).astype(np.int64),
            "j": np.maximum(arr[:, 0], arr[:, 1]).astype(np.int64),
            "cosine": arr[:, 2],
        }
    )
    return (
        df.sort_values("cosine", ascending=False).drop_duplicates(["i", "j"]).reset_index(drop=True)
    )


def batch_ssim(x: np.ndarray, y: np.ndarray, win: int = 7) -> np.ndarray:
    """SSIM of each image pair of ``x``, ``y`` (B, H, W) uint8, as skimage's defaults compute it.

    Uniform 7×7 window, K1 = 0.01, K2 = 0.03, sample covariance, mean over the
    interior — vectorised over the batch (skimage's function takes one pair).
    """
    from scipy.ndimage import uniform_filter

    x = x.astype(np.float32)
    y = y.astype(np.float32)
    size = (1, win, win)
    ux, uy = uniform_filter(x, size), uniform_filter(y, size)
    uxx, uyy, uxy = (
        uniform_filter(x * x, size),
        uniform_filter(y * y, size),
        uniform_filter(x * y, size),
    )
    norm = win * win / (win * win - 1.0)
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def _orient(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    return np.where((f == 1)[:, None, None], a[:, :, ::-1], a)


def pair_ssim(
    thumbs: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    flipped: np.ndarray | None = None,
    batch: int = 1024,
) -> np.ndarray:
    """SSIM of each pair of thumbnails.

    ``flipped`` per pair: 1 compares the mirrored first image, 0 the image as
    is, -1 (unknown orientation) takes the larger of both; None means all 0.
    """
    flipped = np.zeros(len(i), dtype=np.int64) if flipped is None else np.asarray(flipped)
    out = np.empty(len(i), dtype=np.float64)
    for start in range(0, len(i), batch):
        sl = slice(start, start + batch)
        a, b, f = thumbs[i[sl]], thumbs[j[sl]], flipped[sl]
        a = _orient(a, f)
        s = batch_ssim(a, b)
        if (f == -1).any():
            s = np.where(f == -1, np.maximum(s, batch_ssim(a[:, :, ::-1], b)), s)
        out[sl] = s
    return out


def coarse_diff(
    thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, flipped=None, batch: int = 65536
) -> np.ndarray:
    """Mean absolute difference of the 8×8 block means of each pair (a cheap pre-filter)."""
    n, h, w = thumbs.shape
    cells = np.empty((n, 8, 8), dtype=np.float32)
    for start in range(0, n, 8192):
        t = thumbs[start : start + 8192, : h - h % 8, : w - w % 8].astype(np.float32)
        cells[start : start + 8192] = t.reshape(len(t), 8, h // 8, 8, w // 8).mean((2, 4))
    f = np.zeros(len(i), dtype=np.int64) if flipped is None else np.asarray(flipped)
    out = np.empty(len(i), dtype=np.float64)
    for start in range(0, len(i), batch):
        sl = slice(start, start + batch)
        a, b, fs = cells[i[sl]], cells[j[sl]], f[sl]
        d = np.abs(_orient(a, fs) - b).mean((1, 2))
        if (fs == -1).any():
            d = np.where(fs == -1, np.minimum(d, np.abs(a[:, :, ::-1] - b).mean((1, 2))), d)
        out[sl] = d
    return out


def resized_ssim(
    thumbs: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    flipped: np.ndarray | None = None,
    sigmas: tuple[float, ...] = RESIZE_SIGMAS,
    batch: int = 1024,
) -> np.ndarray:
    """SSIM of each pair after blurring *one* side: is one image a shrunk-and-enlarged copy?

    A copy that was shrunk and enlarged again lost its finest detail; the
    original, blurred by a matching Gaussian, looks like it — while the copy
    itself is left alone. Blurring only one side keeps this precise: two
    different images that merely look alike once *both* are blurred (plain
    T-shirts) still differ in the detail of the side left sharp. Returns the
    largest SSIM over ``sigmas`` and over which side is blurred.
    """
    flipped = np.zeros(len(i), dtype=np.int64) if flipped is None else np.asarray(flipped)
    involved = np.unique(np.r_[i, j])
    pos = np.full(len(thumbs), -1)
    pos[involved] = np.arange(len(involved))
    sharp = thumbs[involved]
    pi, pj = pos[i], pos[j]
    out = np.full(len(i), -1.0)
    for sigma in sigmas:
        soft = gaussian_filter(sharp.astype(np.float32), (0, sigma, sigma))
        for start in range(0, len(i), batch):
            sl = slice(start, start + batch)
            f = flipped[sl]
            ia, jb = pi[sl], pj[sl]
            for f_use in [f] if not (f == -1).any() else [np.maximum(f, 0), np.abs(f)]:
                s1 = batch_ssim(_orient(soft[ia], f_use), sharp[jb])
                s2 = batch_ssim(_orient(sharp[ia], f_use), soft[jb])
                out[sl] = np.maximum(out[sl], np.maximum(s1, s2))
    return out


def cluster_pairs(
    n: int,
    exact_i: np.ndarray,
    exact_j: np.ndarray,
    near_i: np.ndarray,
    near_j: np.ndarray,
    near_sim: np.ndarray,
) -> np.ndarray:
    """Duplicate group of each of ``n`` nodes (-1: in none); near matches never chain.

    Exact copies (``exact_i``, ``exact_j``: same content) form one unit each,
    joined transitively — identical files are identical. Near pairs join units
    by complete linkage: pairs are taken by decreasing similarity, and two
    groups merge only if *every* unit of one matches every unit of the other.
    So A~B and B~C with A and C not matching never put A and C together, and
    a run of similar-but-distinct images (plain T-shirts, each a little
    different from the next) cannot grow into one huge group, as connected
    components of the pairs did.
    """
    unit = union_find(n, np.asarray(exact_i, np.int64), np.asarray(exact_j, np.int64))
    ui, uj = unit[np.asarray(near_i, np.int64)], unit[np.asarray(near_j, np.int64)]
    keep = ui != uj
    ui, uj, sim = ui[keep], uj[keep], np.asarray(near_sim, np.float64)[keep]
    lo, hi = np.minimum(ui, uj), np.maximum(ui, uj)
    matches = set(zip(lo.tolist(), hi.tolist()))
    group = {}  # unit -> group id (the group's first unit)
    members: dict[int, list[int]] = {}
    for k in np.argsort(-sim, kind="stable").tolist():
        a, b = int(lo[k]), int(hi[k])
        ga, gb = group.get(a, a), group.get(b, b)
        if ga == gb:
            continue
        ma, mb = members.get(ga, [a]), members.get(gb, [b])
        if all((min(x, y), max(x, y)) in matches for x in ma for y in mb):
            root, other = min(ga, gb), max(ga, gb)
            merged = ma + mb
            members[root] = merged
            members.pop(other, None)
            for u in merged:
                group[u] = root
    in_exact = np.zeros(n, dtype=bool)
    in_exact[np.asarray(exact_i, np.int64)] = True
    in_exact[np.asarray(exact_j, np.int64)] = True
    out = np.full(n, -1, dtype=np.int64)
    for node in range(n):
        u = int(unit[node])
        g = group.get(u)
        if g is not None:
            out[node] = g
        elif in_exact[node]:
            out[node] = u
    return out


# ---------------------------------------------------------------------------
# the whole search


def _confirm(
    cand: pd.DataFrame,
    labels: np.ndarray,
    ssim: np.ndarray,
    within_class_ssim: float,
    cross_class_cosine: float,
) -> np.ndarray:
    same = labels[cand["i"].to_numpy()] == labels[cand["j"].to_numpy()]
    ok = ssim >= within_class_ssim
    cos = cand["cosine"].to_numpy(dtype=np.float64)
    cross_by_cos = (~same) & (np.nan_to_num(cos, nan=-1.0) >= cross_class_cosine)
    return ok | cross_by_cos


def candidate_pairs(
    hashes,
    flip_invariant: bool,
    max_distance: int,
    embeddings: np.ndarray | None = None,
    min_cosine: float = 0.9,
    top_k: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exact pairs, near candidates) over the readable images, indices into ``hashes``."""
    ok_idx = np.flatnonzero(hashes.ok)
    exact = exact_pairs(hashes.content[ok_idx])
    exact[["i", "j"]] = ok_idx[exact[["i", "j"]].to_numpy()] if len(exact) else exact[["i", "j"]]
    near = phash_candidates(
        hashes.phash[ok_idx],
        hashes.phash_flip[ok_idx] if flip_invariant else None,
        max_distance,
    )
    if len(near):
        near["i"], near["j"] = ok_idx[near["i"].to_numpy()], ok_idx[near["j"].to_numpy()]
    near["cosine"] = np.nan
    if embeddings is not None:
        emb = embedding_candidates(embeddings[ok_idx], min_cosine, top_k)
        if len(emb):
            emb["i"], emb["j"] = ok_idx[emb["i"].to_numpy()], ok_idx[emb["j"].to_numpy()]
            near = near.drop(columns="cosine").merge(emb, on=["i", "j"], how="outer")
    if len(exact) and len(near):
        same = hashes.content[near["i"].to_numpy()] == hashes.content[near["j"].to_numpy()]
        near = near[~same]
    return exact, near.reset_index(drop=True)


def find_pairs(
    paths: list[str],
    labels: np.ndarray,
    hashes,
    within_class_ssim: float = 0.95,
    cross_class_cosine: float = 0.99,
    flip_invariant: bool = False,
    max_distance: int = 6,
    embeddings: np.ndarray | None = None,
    ssim_side: int = 32,
    resize_invariant: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Confirmed duplicate pairs: ``i, j, method, distance, cosine, ssim, similarity``."""
    exact, near = candidate_pairs(hashes, flip_invariant, max_distance, embeddings)
    stats = {"exact_pairs": len(exact), "candidate_pairs": len(near)}
    exact = exact.assign(method="exact", distance=0, cosine=np.nan, ssim=1.0, similarity=1.0)
    if len(near):
        ii, jj = near["i"].to_numpy(np.int64), near["j"].to_numpy(np.int64)
        if ssim_side == hashes.thumbs.shape[1]:
            thumbs = hashes.thumbs  # the hash pass kept them: no second decode
        else:
            involved = np.unique(np.r_[ii, jj])
            pos = np.full(len(paths), -1)
            pos[involved] = np.arange(len(involved))
            thumbs = load_thumbnails([paths[k] for k in involved], ssim_side)
            ii, jj = pos[ii], pos[jj]
        if flip_invariant:
            flipped = near["flipped"].fillna(-1).to_numpy(np.int64)
        else:
            flipped = np.zeros(len(near), dtype=np.int64)
        ssim = pair_ssim(thumbs, ii, jj, flipped)
        resized = np.zeros(len(near), dtype=bool)
        if resize_invariant:
            # only pairs that fail as they are, and look alike at 8×8 (cheap) are tried
            todo = np.flatnonzero(
                (ssim < within_class_ssim)
                & (coarse_diff(thumbs, ii, jj, flipped) <= RESIZE_MAX_COARSE_DIFF)
            )
            scale = ssim_side / 32
            rs = resized_ssim(
                thumbs, ii[todo], jj[todo], flipped[todo], tuple(x * scale for x in RESIZE_SIGMAS)
            )
            better = rs > ssim[todo]
            ssim[todo[better]] = rs[better]
            resized[todo[better]] = True
            stats["resize_tested_pairs"] = len(todo)
        near["ssim"] = ssim
        near["resized"] = resized
        keep = _confirm(near, labels, ssim, within_class_ssim, cross_class_cosine)
        near = near[keep].copy()
        has_cos = near["cosine"].notna()
        near["method"] = np.where(
            has_cos & near["distance"].isna(),
            "embedding",
            np.where(near["resized"], "phash_resized", "phash"),
        )
        near["similarity"] = np.fmax(near["ssim"].to_numpy(), near["cosine"].to_numpy())
        near = near.drop(columns=[c for c in ("flipped", "resized") if c in near.columns])
    stats["confirmed_near_pairs"] = len(near)
    cols = ["i", "j", "method", "distance", "cosine", "ssim", "similarity"]
    frames = [f[cols] for f in (exact, near) if len(f)]
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return pairs, stats


def embed_images(
    paths: list[str], embedder: str, workspace=None, batch_size: int = 256
) -> np.ndarray:
    """L2-normalised features: ``run:NAME`` (a trained run of ``workspace``) or a timm name.

    A timm name is built with ``pretrained=False`` (no downloads offline), so it
    only helps where its weights are cached; a trained run is the useful choice.
    """
    import torch

    from ..data.imageio import open_image, to_channels
    from ..errors import DataError

    if embedder.startswith("run:"):
        from ..inference import checkpoints, load_module

        if workspace is None:
            raise DataError(f"--embedder {embedder} needs --workspace (the run lives there).")
        run_dir = workspace / "runs" / embedder[4:]
        if not run_dir.is_dir():
            runs = sorted(p.name for p in (workspace / "runs").glob("*") if p.is_dir())
            raise DataError(
                f"No run {embedder[4:]!r} in {workspace}; runs: {', '.join(runs) or 'none'}."
            )
        module = load_module(checkpoints(run_dir)[0], torch.device("cpu"))
        net, norm = module.model, module.normalize
        size, channels = module.cfg.data.image_size, module.cfg.data.channels
    else:
        import timm

        try:
            net = timm.create_model(embedder, pretrained=False, num_classes=0)
        except RuntimeError as exc:
            raise DataError(f"Unknown embedder {embedder!r}: {exc}") from None
        cfg = net.pretrained_cfg
        size, channels = int(cfg.get("input_size", (3, 224, 224))[-1]), 3
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, -1, 1, 1) * 255
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, -1, 1, 1) * 255

        def norm(x):
            return (x.float() - mean) / std

    net.eval()
    feats = []
    for start in range(0, len(paths), batch_size):
        batch = []
        for p in paths[start : start + batch_size]:
            try:
                img = open_image(p).convert("RGB" if channels == 3 else "L")
                arr = to_channels(img.resize((size, size), Image.BILINEAR), channels)
            except Exception:  # noqa: BLE001 - unreadable files embed as zeros
                arr = np.zeros((size, size, channels), dtype=np.uint8)
            batch.append(arr)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            f = net.forward_features(norm(x)) if hasattr(net, "forward_features") else net(norm(x))
            if f.ndim == 4:
                f = f.mean((2, 3))
            elif f.ndim == 3:
                f = f.mean(1)
        feats.append(f.float().numpy())
    out = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
