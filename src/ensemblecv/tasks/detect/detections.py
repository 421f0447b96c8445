"""A detector's boxes for some images, in original pixels: what OOF, test and ``predict`` store."""

from __future__ import annotations

import numpy as np
import pandas as pd

DET_COLUMNS = ["sample_id", "label", "class_name", "score", "x1", "y1", "x2", "y2"]


def predict_detections(
    module, source, rows, inputs, config, device, hflip: bool = False
) -> pd.DataFrame:
    """Detections of ``rows`` in original pixels, in row order (DDP: sharded, gathered on rank 0).

    ``hflip``: predict the mirrored images and mirror the boxes back (a TTA view)."""
    import torch

    from ...training.data import make_loader
    from ...training.distributed import gather_list, shard
    from .data import DetectDataset, collate_detections

    mine = shard(np.asarray(rows))
    loader = make_loader(
        DetectDataset(source, mine),
        config.train.batch_size * 2,
        0,
        False,
        inputs.workers,
        device.type == "cuda",
        collate_fn=collate_detections,
    )
    module.eval().to(device)
    parts: list = []
    with torch.no_grad():
        for x, _, batch_rows in loader:
            x = x.flip(-1) if hflip else x
            for row, det in zip(batch_rows.tolist(), module(x.to(device))):
                boxes = det["boxes"].float().cpu().numpy()
                if hflip:
                    width = x.shape[-1]
                    boxes = np.stack(
                        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
                    ).reshape(-1, 4)
                boxes = source.to_original(row, boxes)
                labels = det["labels"].cpu().numpy().astype(np.int64) - 1
                parts.append(
                    pd.DataFrame(
                        {
                            "sample_id": source.sample_ids[row],
                            "label": labels,
                            "class_name": [inputs.classes[k] for k in labels],
                            "score": det["scores"].float().cpu().numpy(),
                            "x1": boxes[:, 0],
                            "y1": boxes[:, 1],
                            "x2": boxes[:, 2],
                            "y2": boxes[:, 3],
                        },
                        columns=DET_COLUMNS,
                    )
                )
    parts = gather_list(parts, len(rows))
    if parts is None:
        return pd.DataFrame(columns=DET_COLUMNS)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=DET_COLUMNS)
    return frame.astype(
        {"sample_id": str, "label": np.int64, "class_name": str, "score": np.float32,
         "x1": np.float32, "y1": np.float32, "x2": np.float32, "y2": np.float32}
    )  # fmt: skip
