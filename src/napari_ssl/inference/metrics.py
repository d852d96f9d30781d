"""Image-quality metrics in raw units: PSNR, SSIM (2D and 3D), MAE, MSE.

Arrays are channels first, ``(C, *spatial)`` with 2 or 3 spatial axes (a bare ``(Y, X)`` array
is one channel). Sums are computed in float64, block by block (bounded memory for any size).

SSIM follows Wang et al. (2004): Gaussian window with sigma 1.5 truncated at 3.5 sigma (11
pixels), K1 = 0.01, K2 = 0.03, population (not sample) covariances, mean over the pixels whose
window lies fully inside the image, then mean over channels. This equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=R, channel_axis=0)``. Along an axis shorter than 11 pixels the window is truncated to
fit (skimage refuses such images).

Constant target: ``image_metrics`` uses a data range of 1.0 when ``target.max() ==
target.min()`` (there is no dynamic range to scale by), so PSNR and SSIM stay finite. PSNR is
``inf`` only when the prediction equals the target exactly, as usual.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03


STRIP = 1 << 16  # elements per block: float64 temporaries stay in the CPU cache (3x faster)
MIN_ROWS = 16  # rows (SSIM: side) per block at least: SSIM's blocks carry a 10-pixel halo


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return pred, target


def _blocks(shape: tuple[int, ...], rows: int | None = None) -> list[slice]:
    """Slices along the first axis, each about :data:`STRIP` elements (``rows`` of them)."""
    n = shape[0] if shape else 1
    step = rows or max(MIN_ROWS, STRIP // max(1, math.prod(shape[1:])))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _mean_of(pred: np.ndarray, target: np.ndarray, fn: Any) -> float:
    """Mean of ``fn(p - t)`` in float64, block by block (no float64 copy of a whole image)."""
    p, t = _pair(pred, target)
    if p.size == 0:
        return float("nan")
    if p.ndim == 0:
        p, t = p[None], t[None]
    total = sum(
        float(fn(p[b].astype(np.float64) - t[b].astype(np.float64)).sum()) for b in _blocks(p.shape)
    )
    return total / p.size


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error."""
    return _mean_of(pred, target, np.square)


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    return _mean_of(pred, target, np.abs)


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)``; ``inf`` if equal."""
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return _psnr_of(mse(pred, target), data_range)


def _psnr_of(err: float, data_range: float) -> float:
    """``10 log10(data_range² / err)`` in dB; ``inf`` for no error."""
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def _gaussian(radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / SIGMA) ** 2)
    return k / k.sum()


def _filter_valid(a: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Separable correlation with ``kernels[axis]`` keeping only fully covered pixels."""
    for axis, k in enumerate(kernels):
        n = a.shape[axis] - len(k) + 1
        out = np.zeros((*a.shape[:axis], n, *a.shape[axis + 1 :]), dtype=np.float64)
        for i, w in enumerate(k):
            sl = (slice(None),) * axis + (slice(i, i + n),)
            out += w * a[sl]
        a = out
    return a


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float, block: int | None) -> float:
    """Mean SSIM of one channel, computed in cubes of ``block`` output pixels a side (each read
    with its halo): small enough for the float64 temporaries to stay in the CPU cache."""
    full = int(TRUNCATE * SIGMA + 0.5)
    kernels = [_gaussian(min(full, (n - 1) // 2)) for n in x.shape]
    valid = [n - len(k) + 1 for n, k in zip(x.shape, kernels, strict=True)]
    side = block or max(MIN_ROWS, round(STRIP ** (1 / x.ndim)))
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    total = 0.0
    for starts in itertools.product(*(range(0, v, side) for v in valid)):
        box = tuple(
            slice(s, min(v, s + side) + len(k) - 1)
            for s, v, k in zip(starts, valid, kernels, strict=True)
        )
        xs, ys = x[box].astype(np.float64), y[box].astype(np.float64)
        ux, uy = _filter_valid(xs, kernels), _filter_valid(ys, kernels)
        vx = _filter_valid(xs * xs, kernels) - ux * ux
        vy = _filter_valid(ys * ys, kernels) - uy * uy
        vxy = _filter_valid(xs * ys, kernels) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        total += float(s.sum())
    return total / math.prod(valid)


def ssim(
    pred: np.ndarray, target: np.ndarray, data_range: float, block: int | None = None
) -> float:
    """Structural similarity of ``(C, Y, X)`` or ``(C, Z, Y, X)`` arrays, mean over channels.

    Computed in blocks (``block`` output pixels a side; default about :data:`STRIP` pixels per
    block), so memory stays bounded and small for any image size.
    """
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    p, t = _pair(pred, target)
    if p.ndim == 2:
        p, t = p[None], t[None]
    if p.ndim not in (3, 4):
        raise ValueError(f"SSIM needs (C, Y, X) or (C, Z, Y, X) arrays, got shape {p.shape}")
    scores = [_ssim_channel(pc, tc, data_range, block) for pc, tc in zip(p, t, strict=True)]
    return float(np.mean(scores))


def data_range_of(target: np.ndarray) -> float:
    """``target.max() - target.min()``, or 1.0 for a constant target (see module docstring)."""
    t = np.asarray(target)
    span = float(t.max()) - float(t.min())
    return span if span > 0 else 1.0


def image_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM, MAE and MSE of a prediction against its target, in raw units."""
    r = data_range_of(target)
    return {
        "psnr": psnr(pred, target, r),
        "ssim": ssim(pred, target, r),
        "mae": mae(pred, target),
        "mse": mse(pred, target),
    }


def masked_mse(pred: np.ndarray, target: np.ndarray, hidden: np.ndarray) -> float:
    """Mean squared error over the hidden pixels (``hidden`` broadcasts to ``target``), summed in
    float64: the masked-token MSE of the test step. NaN when nothing is hidden."""
    hidden = np.broadcast_to(hidden, target.shape)
    if not hidden.any():
        return float("nan")
    diff = pred[hidden].astype(np.float64) - target[hidden]
    return float(np.mean(diff**2))


def masked_metrics(
    reconstruction: np.ndarray, target: np.ndarray, hidden: np.ndarray
) -> dict[str, float]:
    """Masking's own scores, over the hidden pixels only (the visible ones are the input's):
    their MSE and its PSNR, data range as :func:`image_metrics`."""
    err = masked_mse(reconstruction, target, hidden)
    return {"masked_mse": err, "masked_psnr": _psnr_of(err, data_range_of(target))}
