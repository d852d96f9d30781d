"""Metrics: known values, edge cases, and SSIM/PSNR against scikit-image (BiaPy's venv)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from biapy_peer import run_biapy
from napari_ssl.inference.metrics import data_range_of, image_metrics, mae, mse, psnr, ssim


def test_known_values() -> None:
    target = np.zeros((1, 4, 4))
    pred = target.copy()
    pred[0, 0, :2] = [2.0, -2.0]  # two pixels off by 2 out of 16
    assert mse(pred, target) == pytest.approx(8 / 16)
    assert mae(pred, target) == pytest.approx(4 / 16)
    assert psnr(pred, target, 255) == pytest.approx(10 * math.log10(255**2 / 0.5))
    assert psnr(target + 1, target, 255) == pytest.approx(20 * math.log10(255))
    assert psnr(target, target, 1) == math.inf


def test_ssim_basic_properties(sem_2d: np.ndarray) -> None:
    target = sem_2d[None, :128, :160].astype(np.float64)
    r = data_range_of(target)
    assert ssim(target, target, r) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    scores = [ssim(target + rng.normal(0, s, target.shape), target, r) for s in (2, 10, 40)]
    assert 1 > scores[0] > scores[1] > scores[2] > 0
    # symmetric in its two arguments, and the (Y, X) shorthand is the one-channel case
    noisy = target + rng.normal(0, 10, target.shape)
    assert ssim(noisy, target, r) == pytest.approx(ssim(target, noisy, r))
    assert ssim(noisy[0], target[0], r) == pytest.approx(ssim(noisy, target, r))


def test_ssim_hand_computed_constant_images() -> None:
    """For constant images the variances vanish: SSIM = (2ab + C1) / (a² + b² + C1)."""
    a, b, r = 3.0, 5.0, 10.0
    c1 = (0.01 * r) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    for shape in ((2, 20, 20), (1, 4, 20, 20)):
        assert ssim(np.full(shape, a), np.full(shape, b), r) == pytest.approx(expected)


def test_ssim_small_axes_and_shape_errors() -> None:
    rng = np.random.default_rng(1)
    vol = rng.random((1, 3, 12, 9))  # Z and X shorter than the 11-pixel window
    assert ssim(vol, vol, 1.0) == pytest.approx(1.0)
    assert 0 < ssim(vol + rng.normal(0, 0.2, vol.shape), vol, 1.0) < 1
    with pytest.raises(ValueError, match="differ in shape"):
        image_metrics(vol, vol[..., :5])
    with pytest.raises(ValueError, match="data_range"):
        ssim(vol, vol, 0)


def test_image_metrics_constant_target_is_finite() -> None:
    target = np.full((1, 16, 16), 7.0)
    pred = target + np.random.default_rng(2).normal(0, 0.1, target.shape)
    metrics = image_metrics(pred, target)
    assert set(metrics) == {"psnr", "ssim", "mae", "mse"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["psnr"] == pytest.approx(psnr(pred, target, 1.0))  # data range falls back to 1
    same = image_metrics(target, target)
    assert same["ssim"] == pytest.approx(1.0) and same["mse"] == 0 and same["psnr"] == math.inf


def test_image_metrics_uses_target_range(nuclei_3d: np.ndarray) -> None:
    target = nuclei_3d[None, 20:28, :64, :64]
    pred = (target * 0.9).astype(np.uint16)
    m = image_metrics(pred, target)
    r = float(target.max()) - float(target.min())
    assert m["psnr"] == pytest.approx(psnr(pred, target, r))
    assert m["ssim"] == pytest.approx(ssim(pred, target, r))
    assert 0 < m["ssim"] < 1 and m["mae"] > 0


@pytest.mark.biapy
def test_matches_scikit_image(biapy_python: Path, tmp_path: Path, sem_2d, nuclei_3d) -> None:
    rng = np.random.default_rng(3)
    t2 = sem_2d[None, 200:300, 300:420].astype(np.float64)
    cases = {
        "sem": (t2 + rng.normal(0, 12, t2.shape), t2),
        "multichannel": (rng.random((3, 40, 45)), rng.random((3, 40, 45))),
        "nuclei3d": (
            nuclei_3d[None, 30:44, 100:140, 90:128] * 1.1 + 5.0,
            nuclei_3d[None, 30:44, 100:140, 90:128].astype(np.float64),
        ),
    }
    ours = {}
    for key, (p, t) in cases.items():
        np.save(tmp_path / f"{key}_p.npy", p)
        np.save(tmp_path / f"{key}_t.npy", t)
        r = data_range_of(t)
        ours[key] = (ssim(p, t, r), psnr(p, t, r))
    script = """
        import json, sys
        from pathlib import Path
        import numpy as np
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
        out = {}
        for key in sys.argv[2:]:
            p = np.load(Path(sys.argv[1]) / f"{key}_p.npy")
            t = np.load(Path(sys.argv[1]) / f"{key}_t.npy")
            r = float(t.max() - t.min())
            s = structural_similarity(p, t, data_range=r, channel_axis=0, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
            out[key] = [float(s), float(peak_signal_noise_ratio(t, p, data_range=r))]
        print(json.dumps(out))
    """
    theirs = json.loads(run_biapy(biapy_python, script, str(tmp_path), *cases))
    for key, (s, p) in ours.items():
        assert s == pytest.approx(theirs[key][0], abs=1e-9), key
        assert p == pytest.approx(theirs[key][1], abs=1e-9), key


def test_blockwise_metrics_equal_whole_image_ones(
    sem_2d: np.ndarray, nuclei_3d: np.ndarray
) -> None:
    """SSIM in small blocks (halo included) and block sums give the whole-image values."""
    rng = np.random.default_rng(5)
    for target in (sem_2d[None, :150, :170], nuclei_3d[None, :20, :60, :50]):
        t = target.astype(np.float64)
        p = t + rng.normal(0, 10, t.shape)
        r = data_range_of(t)
        whole = ssim(p, t, r, block=10_000)
        for block in (3, 7, 16):
            assert ssim(p, t, r, block=block) == pytest.approx(whole, rel=1e-12)
        assert mse(p, t) == pytest.approx(np.mean((p - t) ** 2), rel=1e-12)
        assert mae(p.astype(np.float32), t) == pytest.approx(
            np.mean(np.abs(p.astype(np.float32) - t))
        )
