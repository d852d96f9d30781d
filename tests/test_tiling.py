"""Tiled prediction: exact identity reconstruction, lazy inputs, blending, progress, cancel."""

from __future__ import annotations

import tracemalloc

import dask.array as da
import numpy as np
import pytest
import torch

from napari_ssl.data.images import Image
from napari_ssl.inference.tiling import (
    InferenceCancelled,
    predict_tiled,
    ramp_window,
    reflect_indices,
    tile_starts,
)


def scaled(block: np.ndarray) -> np.ndarray:
    """A fixed normalisation (raw -> float32), as the engine's normaliser would do."""
    return ((block.astype(np.float32) - 100.0) / 50.0).astype(np.float32)


def identity(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"reconstruction": x.clone()}


def check_identity(array: np.ndarray, tile: tuple[int, ...], **kwargs: object) -> None:
    out = predict_tiled(identity, Image(array, "img"), tile, normalize=scaled, **kwargs)
    assert set(out) == {"reconstruction"}
    rec = out["reconstruction"]
    assert rec.dtype == np.float32
    assert rec.shape == array.shape
    np.testing.assert_allclose(rec, scaled(np.asarray(array)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_identity_2d_real_image(sem_2d: np.ndarray, overlap: float) -> None:
    crop = sem_2d[None, 100:301, 200:437]  # 201 x 237: not a multiple of anything
    check_identity(crop, (64, 64), overlap=overlap)


def test_identity_3d_real_volume(nuclei_3d: np.ndarray) -> None:
    crop = nuclei_3d[None, 10:27, 40:110, 60:131]
    check_identity(crop, (8, 32, 32), overlap=0.5, batch_size=3)


def test_identity_multichannel_and_padding() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, size=(3, 90, 75), dtype=np.uint16)
    check_identity(image, (32, 48), padding=(0, 10), overlap=0.3)


@pytest.mark.parametrize(
    ("shape", "tile"),
    [((1, 20, 13), (64, 64)), ((1, 1, 5), (16, 16)), ((2, 3, 40, 9), (8, 16, 16))],
)
def test_identity_image_smaller_than_tile(shape: tuple[int, ...], tile: tuple[int, ...]) -> None:
    image = np.random.default_rng(1).random(shape).astype(np.float32) * 300
    check_identity(image, tile)


def test_dask_image_is_read_lazily(sem_2d: np.ndarray) -> None:
    lazy = da.from_array(sem_2d[None, :300, :300], chunks=(1, 100, 100))
    reads: list[tuple[int, ...]] = []

    class Spy(Image):
        def read(self, region: tuple[slice, ...] | None = None) -> np.ndarray:
            block = super().read(region)
            reads.append(block.shape)
            return block

    out = predict_tiled(identity, Spy(lazy, "lazy"), (64, 64), normalize=scaled)
    np.testing.assert_allclose(out["reconstruction"], scaled(sem_2d[None, :300, :300]), atol=1e-5)
    assert reads and all(s[1] <= 64 and s[2] <= 64 for s in reads)


def test_several_outputs_with_other_channel_counts() -> None:
    image = np.random.default_rng(2).random((2, 50, 60)).astype(np.float32)

    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": x.mean(1, keepdim=True), "both": x * 2}

    out = predict_tiled(predict, Image(image, "i"), (32, 32), normalize=lambda b: b)
    np.testing.assert_allclose(out["mean"], image.mean(0, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(out["both"], image * 2, atol=1e-5)


def test_progress_and_cancel() -> None:
    image = Image(np.zeros((1, 100, 100), np.float32), "z")
    calls: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    predict_tiled(identity, image, (32, 32), normalize=scaled, batch_size=3, progress=record)
    total = calls[-1][1]
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == -(-total // 3)

    calls.clear()

    def stop() -> bool:
        return len(calls) >= 2

    with pytest.raises(InferenceCancelled):
        predict_tiled(identity, image, (32, 32), normalize=scaled, progress=record, cancelled=stop)
    assert len(calls) == 2


def test_per_tile_offsets_blend_smoothly() -> None:
    """Each tile's prediction is shifted by its own constant: seams must be smooth ramps."""
    rng = np.random.default_rng(3)
    offsets: list[float] = []

    def shifted(x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = torch.from_numpy(rng.uniform(0, 10, size=len(x)).astype(np.float32))
        offsets.extend(c.tolist())
        return {"r": x + c.view(-1, 1, 1, 1)}

    def run(overlap: float) -> np.ndarray:
        offsets.clear()
        image = Image(np.zeros((1, 150, 190), np.float32), "zeros")
        out = predict_tiled(shifted, image, (64, 64), normalize=lambda b: b, overlap=overlap)
        return out["r"][0]

    def steepest(a: np.ndarray) -> float:
        return max(float(np.abs(np.diff(a, axis=axis)).max()) for axis in (0, 1))

    hard = run(0.0)
    assert steepest(hard) > 2  # without overlap the seams are steps ...
    assert set(np.unique(hard)) <= set(np.float32(offsets))  # ... and no pixel is blended
    smooth = run(0.5)
    assert min(offsets) - 1e-4 <= smooth.min() and smooth.max() <= max(offsets) + 1e-4
    assert steepest(smooth) < 0.1 * (max(offsets) - min(offsets))  # with it, gentle ramps


def test_bounded_host_memory() -> None:
    image = Image(np.zeros((1, 2048, 2048), np.uint8), "big")
    out_bytes = 2048 * 2048 * 4
    tracemalloc.start()
    try:
        out = predict_tiled(identity, image, (256, 256), normalize=scaled, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["reconstruction"].nbytes == out_bytes
    assert peak < 1.5 * out_bytes  # output + a few tiles, no full-size weight or copies


def test_bad_arguments_are_refused() -> None:
    image = Image(np.zeros((1, 40, 40), np.float32), "i")
    with pytest.raises(ValueError, match="one value per spatial axis"):
        predict_tiled(identity, image, (32, 32, 32), normalize=scaled)
    with pytest.raises(ValueError, match="padding"):
        predict_tiled(identity, image, (32, 32), normalize=scaled, padding=(16, 16))
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(identity, image, (32, 32), normalize=scaled, overlap=1.0)
    with pytest.raises(ValueError, match="expected"):
        predict_tiled(lambda x: {"r": x[:, :, :8]}, image, (32, 32), normalize=scaled)


def test_helpers() -> None:
    assert tile_starts(10, 16, 8) == [0]
    assert tile_starts(100, 40, 30) == [0, 30, 60]
    assert tile_starts(100, 40, 25) == [0, 20, 40, 60]
    assert tile_starts(100, 40, 40) == [0, 40, 80]  # no overlap: a fixed grid
    starts = tile_starts(1000, 96, 72)
    assert starts[0] == 0 and starts[-1] == 1000 - 96
    assert max(np.diff(starts)) <= 72
    np.testing.assert_array_equal(
        reflect_indices(-7, 12, 5), np.pad(np.arange(5), (7, 7), mode="reflect")[:19]
    )
    assert (reflect_indices(-3, 4, 1) == 0).all()
    w = ramp_window(64, 24)
    assert w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w[:24] + w[:24][::-1], 1, atol=1e-6)  # sums to 1
