"""Image-quality metrics in raw units: PSNR, SSIM (2D and 3D), MAE, MSE.

Arrays are channels first, ``(C, *spatial)`` with 2 or 3 spatial axes (a bare ``(Y, X)`` array
is one channel). Sums are computed in float64.

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

import numpy as np

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    return pred.astype(np.float64, copy=False), target.astype(np.float64, copy=False)


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error."""
    p, t = _pair(pred, target)
    return float(np.mean(np.square(p - t)))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)``; ``inf`` if equal."""
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    err = mse(pred, target)
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


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    full = int(TRUNCATE * SIGMA + 0.5)
    kernels = [_gaussian(min(full, (n - 1) // 2)) for n in x.shape]

    def filt(a: np.ndarray) -> np.ndarray:
        return _filter_valid(a, kernels)

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """Structural similarity of ``(C, Y, X)`` or ``(C, Z, Y, X)`` arrays, mean over channels."""
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    p, t = _pair(pred, target)
    if p.ndim == 2:
        p, t = p[None], t[None]
    if p.ndim not in (3, 4):
        raise ValueError(f"SSIM needs (C, Y, X) or (C, Z, Y, X) arrays, got shape {p.shape}")
    return float(np.mean([_ssim_channel(pc, tc, data_range) for pc, tc in zip(p, t, strict=True)]))


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
