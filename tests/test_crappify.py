"""The crappify pretext exactly as DESIGN §4 specifies it, on real SEM / nuclei crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_ssl.pretext.crappify import crappify, crappify_batch, degraded_shape


def _noise_only(image: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    """Factor 1: no resampling, so the output minus the input is the added noise."""
    return crappify(image, noise, 1.0, seed=seed)


def test_noise_std_is_noise_times_image_max() -> None:
    # constant-ish float image: far from its range limits, so clipping does not bias the std
    image = np.full((1, 128, 128), 500.0, np.float32)
    image[0, 0, 0], image[0, -1, -1] = 0.0, 1000.0  # max M = 1000
    out = _noise_only(image, 0.01)
    added = (out - image)[0, 1:-1, 1:-1]
    assert added.std() == pytest.approx(0.01 * 1000, rel=0.03)
    assert abs(added.mean()) < 0.3  # zero-mean
    assert out.dtype == np.float32


def test_noise_scales_with_the_global_max_not_the_local_value(sem_2d: np.ndarray) -> None:
    crop = sem_2d[:128, :128][None]
    image = crop.astype(np.float32)
    image[0, 0, 0] = 4000.0  # a single bright pixel raises M
    mid = (image > 60) & (image < 200)  # clipping to [min, M] cannot touch these
    added = _noise_only(image, 0.005) - image
    assert added[mid].std() == pytest.approx(0.005 * 4000, rel=0.05)


def test_a_region_takes_the_whole_images_range(sem_2d: np.ndarray) -> None:
    """Previews degrade a region: the noise must follow the whole image's max, not the region's."""
    region = sem_2d[:64, :64][None].astype(np.float32) + 1000  # far from the range limits
    added = crappify(region, 0.01, 1.0, seed=0, data_range=(0.0, 5000.0)) - region
    assert added.std() == pytest.approx(0.01 * 5000, rel=0.05)


def test_noise_is_clipped_to_the_image_range(sem_2d: np.ndarray) -> None:
    crop = sem_2d[200:328, 300:428][None]
    out = _noise_only(crop, 1.0)
    assert out.dtype == np.uint8
    assert out.min() >= crop.min() and out.max() <= crop.max()
    assert out.min() == crop.min() and out.max() == crop.max()  # std = max: both ends reached


def test_integer_images_are_rounded_not_truncated() -> None:
    image = np.full((1, 256, 256), 1000, np.uint16)
    image[0, 0, 0], image[0, -1, -1] = 0, 2000
    # std 0.4 raw units: rounding keeps the mean at 1000, truncation would pull it to ~999.7
    out = _noise_only(image, 0.4 / 2000)
    assert out.dtype == np.uint16
    body = out[0, 1:-1, 1:-1].astype(np.float64)
    assert abs(body.mean() - 1000) < 0.02
    assert set(np.unique(body)) <= {998.0, 999.0, 1000.0, 1001.0, 1002.0}


def test_integer_values_match_round_of_the_seeded_noise() -> None:
    image = np.full((1, 64, 64), 100, np.uint8)
    image[0, 0, 0], image[0, 1, 0] = 0, 200
    out = _noise_only(image, 0.01, seed=3)
    noise = torch.randn((1, 1, 64, 64), generator=torch.Generator().manual_seed(3))[0].numpy()
    expected = np.clip(np.round(image.astype(np.float32) + 2.0 * noise), 0, 200).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_dtype_and_shape_kept(sem_2d: np.ndarray, dtype: type) -> None:
    image = sem_2d[:64, :96][None].astype(dtype)
    out = crappify(image, 0.2, 4.0, seed=0)
    assert out.dtype == np.dtype(dtype) and out.shape == image.shape


def test_factor_one_and_no_noise_is_identity(sem_2d: np.ndarray, nuclei_3d: np.ndarray) -> None:
    for image in (sem_2d[:100, :90][None], nuclei_3d[:10, :50, :40][None]):
        np.testing.assert_array_equal(crappify(image, 0.0, 1.0), image)


def test_seeded_is_reproducible(sem_2d: np.ndarray) -> None:
    image = sem_2d[:64, :64][None]
    a, b = crappify(image, 0.2, 4.0, seed=7), crappify(image, 0.2, 4.0, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, crappify(image, 0.2, 4.0, seed=8))


def test_degraded_shape_scales_every_axis_by_one_over_sqrt_factor() -> None:
    assert degraded_shape((64, 128), 4.0) == (32, 64)
    assert degraded_shape((16, 64, 64), 4.0) == (8, 32, 32)
    assert degraded_shape((64, 64), 2.0) == (45, 45)
    assert degraded_shape((64, 64), 1.0) == (64, 64)
    assert degraded_shape((1, 3), 16.0) == (1, 1)


def test_linear_resampling_matches_a_manual_down_up() -> None:
    """Noise 0, factor 4 == bilinear down to half size and back (align_corners False)."""
    rng = np.random.default_rng(0)
    image = rng.random((2, 32, 48)).astype(np.float32)  # channels are not resampled
    out = crappify(image, 0.0, 4.0)
    x = torch.from_numpy(image)[None]
    down = torch.nn.functional.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False)
    up = torch.nn.functional.interpolate(down, size=(32, 48), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out, up[0].numpy(), atol=1e-6)


def test_factor_four_halves_z_too(nuclei_3d: np.ndarray) -> None:
    """A pattern alternating along Z (constant in YX) is smoothed away: Z is resampled."""
    stack = nuclei_3d[20:36, 100:132, 100:132].astype(np.float32)
    zebra = np.zeros_like(stack)
    zebra[::2] = 1000.0
    out = crappify(zebra[None], 0.0, 4.0)[0]
    assert np.ptp(out[2:-2]) < 1.0  # in the interior the average of each pair: 500
    np.testing.assert_allclose(out[2:-2], 500.0, atol=0.5)
    # on the real stack: exactly trilinear down to half of Z, Y, X and back
    real = crappify(stack[None], 0.0, 4.0)[0]
    x = torch.from_numpy(stack)[None, None]
    down = torch.nn.functional.interpolate(x, size=(8, 16, 16), mode="trilinear")
    up = torch.nn.functional.interpolate(down, size=(16, 32, 32), mode="trilinear")
    np.testing.assert_allclose(real, up[0, 0].numpy(), atol=1e-3)


def test_resampling_smooths_high_frequencies_in_plane(sem_2d: np.ndarray) -> None:
    image = sem_2d[:128, :128][None].astype(np.float32)
    out = crappify(image, 0.0, 4.0)
    grad_in = np.abs(np.diff(image, axis=-1)).mean()
    grad_out = np.abs(np.diff(out, axis=-1)).mean()
    assert grad_out < 0.7 * grad_in


def test_integer_resampled_output_is_rounded(sem_2d: np.ndarray) -> None:
    image = sem_2d[:64, :64][None]
    out = crappify(image, 0.0, 4.0)
    ref = crappify(image.astype(np.float32), 0.0, 4.0)
    np.testing.assert_array_equal(out, np.round(ref).astype(np.uint8))


def test_batch_uses_each_samples_own_range() -> None:
    """The trainer passes per-sample image ranges: std follows each sample's max."""
    x = torch.full((2, 1, 64, 64), 500.0)
    x[1] = 5000.0
    lo = torch.tensor([0.0, 0.0])
    hi = torch.tensor([1000.0, 10000.0])
    gen = torch.Generator().manual_seed(0)
    out = crappify_batch(x, lo, hi, 0.01, 1.0, integer=False, generator=gen)
    stds = (out - x).flatten(1).std(dim=1)
    assert stds[0].item() == pytest.approx(10.0, rel=0.05)
    assert stds[1].item() == pytest.approx(100.0, rel=0.05)


def test_the_pretext_preview_is_a_bounded_centred_crop() -> None:
    from napari_ssl.config import Config
    from napari_ssl.data.images import as_image
    from napari_ssl.pretext.preview import apply_pretext, data_range, preview_region

    image = as_image(np.arange(100 * 60, dtype=np.uint16).reshape(100, 60), "ramp", 2)
    cfg = Config()
    region = preview_region(image.spatial_shape, (40, 80))
    assert region == (slice(30, 70), slice(0, 60))  # centred in Y, whole in X
    crop = image.read(region)
    out = apply_pretext(crop, cfg, data_range(image, None))
    assert out.shape == (1, 40, 60) and not np.array_equal(out, crop)  # crappified
    cfg.pretext.task, cfg.model.vit_token_size = "masking", 64
    masked = apply_pretext(crop, cfg)  # smaller than one token: padded as training pads it
    assert masked.shape == crop.shape and masked.dtype == crop.dtype
    assert np.array_equal(masked, crop) or np.all(masked == crop.min())  # its one token


def test_hot_pixels_do_not_set_the_noise_when_clipped(
    nuclei_3d: np.ndarray, tmp_path: Path
) -> None:
    """With percentile clipping, crappify's noise scales with the clipped maximum."""
    from napari_ssl.config import Config
    from napari_ssl.data.images import as_image
    from napari_ssl.data.normalization import compute_stats
    from napari_ssl.pretext.preview import apply_pretext, data_range

    dim = (nuclei_3d[30, :128, :128] // 10).astype(np.uint16)
    hot = dim.copy()
    hot.flat[::1700] = 65535  # 10 hot pixels
    image = as_image(hot, "hot", 2)
    assert compute_stats(image, "zero_mean_unit_variance").data_max == 65535
    clipped = compute_stats(image, "zero_mean_unit_variance", (0.1, 99.9))
    assert clipped.data_max == pytest.approx(np.percentile(hot, 99.9))
    assert compute_stats(image, "div", (0.1, 99.9)).scale[0] == 65535  # div: by the data's type
    cfg = Config()
    cfg.pretext.resizing_factor = 1.0  # noise only
    errors = {}
    for clip in (None, (0.1, 99.9)):
        cfg.data.percentile_clip = clip
        out = apply_pretext(image.read(), cfg, data_range(image, clip))
        errors[clip] = float(np.std((out[0].astype(float) - hot)[hot != 65535]))
    assert errors[(0.1, 99.9)] < errors[None] / 5  # not drowned by the hot pixels
    assert errors[(0.1, 99.9)] > 0.05 * dim.max()
    # the Reconstruct dock's "degrade first and score" degrades as training did
    from napari_ssl.engine.checkpoints import load_trained
    from napari_ssl.inference.reconstruct import reconstruct
    from napari_ssl.results import ResultsLayout
    from test_training import run_events, tiny_config

    train_cfg = tiny_config(epochs=1)
    train_cfg.data.percentile_clip = (0.1, 99.9)
    train_cfg.pretext.resizing_factor = 1.0
    layout = ResultsLayout(tmp_path, "hot", 1)
    run_events(train_cfg, [image], layout)
    degraded = reconstruct(load_trained(layout.best_checkpoint), image, degrade=True)["degraded"]
    error = float(np.std((degraded[0] - hot)[hot != 65535]))
    assert error == pytest.approx(errors[(0.1, 99.9)], rel=0.2)
