"""The stored classification views: plain and mirror-averaged probabilities from one pass."""

import numpy as np
import torch
from torch import nn

from ensemblecv.training.classify_outputs import predict_probs, predict_views
from ensemblecv.training.data import RowsDataset


class _Identity:
    def augment(self, image, seed=None):
        return image


class _Linear(nn.Module):
    """Logits from raw uint8 pixels; not mirror-symmetric, so a flip changes them."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(2 * 4 * 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float().flatten(1) / 255)


def _dataset(n: int = 7) -> RowsDataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (4, 5, 2), dtype=np.uint8) for _ in range(n)]
    return RowsDataset(images, np.arange(n), np.zeros(n, dtype=np.int64), _Identity())


def _expected(module: nn.Module, ds: RowsDataset) -> tuple[np.ndarray, np.ndarray]:
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        p = torch.softmax(module(x), 1)
        q = torch.softmax(module(torch.flip(x, dims=[3])), 1)
    return p.numpy(), ((p + q) / 2).numpy()


def test_one_pass_gives_the_plain_and_the_mirrored_view():
    module, ds = _Linear(), _dataset()
    plain, mirrored = predict_views(module, ds, 3, torch.device("cpu"), 0, hflip=True)
    want_plain, want_mirrored = _expected(module, ds)
    np.testing.assert_allclose(plain, want_plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mirrored, want_mirrored, rtol=1e-5, atol=1e-6)
    assert np.abs(plain - mirrored).max() > 1e-3  # the flip does change this model's output
    np.testing.assert_allclose(predict_probs(module, ds, 3, torch.device("cpu"), 0), plain)
    np.testing.assert_allclose(
        predict_probs(module, ds, 3, torch.device("cpu"), 0, hflip=True), mirrored
    )


def test_without_tta_there_is_no_mirrored_view():
    plain, mirrored = predict_views(_Linear(), _dataset(), 4, torch.device("cpu"), 0, hflip=False)
    assert mirrored is None
    assert plain.shape == (7, 3) and plain.dtype == np.float32
