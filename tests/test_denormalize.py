"""Undoing normalisation clips outputs back to the range the model was given, as BiaPy 3.7.1:
the percentile-clipping bounds, and [0, 1] in normalised units for scale_range and div."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from biapy_peer import run_biapy
from napari_ssl.biapy_export import to_biapy
from napari_ssl.config import Config
from napari_ssl.data.images import as_image
from napari_ssl.data.normalization import norm_record, stats_for
from napari_ssl.engine.tasks import StatsTable
from test_fixed_normalization import _BIAPY_NORMALIZE

_BIAPY_UNDO = """
from biapy.data.norm import undo_image_norm
np.save(sys.argv[5], undo_image_norm(out * 1.5 + 0.2, info))
"""
KINDS = [("zero_mean_unit_variance", (1.0, 99.0)), ("zero_mean_unit_variance", None),
         ("scale_range", None), ("div", None)]  # fmt: skip


def _config(kind: str, clip: tuple[float, float] | None) -> Config:
    cfg = Config()
    cfg.data.channels, cfg.data.normalization, cfg.data.percentile_clip = 2, kind, clip
    return cfg


def _pixels(sem: np.ndarray) -> np.ndarray:
    """Two float channels (BiaPy rounds outputs of integer images; we keep float32)."""
    return np.stack([sem[:64, :64], sem[64:128, :64] * 0.5], axis=-1).astype(np.float32)


@pytest.mark.parametrize(("kind", "clip"), KINDS)
def test_outputs_are_undone_as_biapy_does(
    biapy_python: Path, tmp_path: Path, sem_2d: np.ndarray, kind: str, clip: tuple | None
) -> None:
    cfg = _config(kind, clip)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(to_biapy(cfg)))
    pixels = _pixels(sem_2d)
    np.save(tmp_path / "x.npy", pixels)
    files = [str(tmp_path / f) for f in ("job", "cfg.yaml", "x.npy", "n.npy", "u.npy")]
    run_biapy(biapy_python, _BIAPY_NORMALIZE + _BIAPY_UNDO, *files)
    image = as_image(pixels, "two", 2, channel_axis=-1)
    stats = stats_for(image, norm_record(cfg.data))
    ours = stats.denormalize(stats.normalize(image.read()) * 1.5 + 0.2)
    theirs = np.moveaxis(np.load(tmp_path / "u.npy"), -1, 0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-2)
    if kind != "zero_mean_unit_variance" or clip:  # bounded: the scaled extremes were cut
        assert (ours == ours.reshape(2, -1).max(axis=1)[:, None, None]).sum() > 10


@pytest.mark.parametrize(("kind", "clip"), KINDS)
def test_the_device_table_undoes_as_the_stats(
    sem_2d: np.ndarray, kind: str, clip: tuple | None
) -> None:
    image = as_image(_pixels(sem_2d), "two", 2, channel_axis=-1)
    stats = stats_for(image, norm_record(_config(kind, clip).data))
    y = stats.normalize(image.read()) * 1.5 + 0.2
    table = StatsTable([stats, stats], torch.device("cpu"))
    on_device = table.denormalize(torch.from_numpy(np.stack([y, y])), torch.tensor([0, 1]))
    np.testing.assert_allclose(on_device[1].numpy(), stats.denormalize(y), rtol=1e-6, atol=1e-4)
    highest = stats.denormalize(y).reshape(2, -1).max(axis=1)
    hi = image.read().reshape(2, -1).max(axis=1)
    if kind == "zero_mean_unit_variance" and not clip:  # unbounded, as BiaPy
        assert (highest > hi).all()
    elif kind == "scale_range":  # at most the image's own maximum
        np.testing.assert_allclose(highest, hi, rtol=1e-5)


def test_outputs_of_an_integer_image_stay_in_its_type_range(sem_2d: np.ndarray) -> None:
    image = as_image(sem_2d[:64, :64].copy(), "u8", 2)  # uint8, no percentile clipping
    stats = stats_for(image, norm_record(Config().data))  # zero mean, unit variance
    undone = stats.denormalize(stats.normalize(image.read()) * 3.0)
    assert undone.dtype == np.float32 and undone.min() == 0.0 and undone.max() == 255.0


def test_a_sampled_range_does_not_clip_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_ssl.data import normalization

    monkeypatch.setattr(normalization, "MAX_STAT_ELEMENTS", 64 * 64)  # a "huge" image
    pixels = (np.random.default_rng(0).random((256, 256)) * 100).astype(np.float32)
    image = as_image(pixels, "big", 2)
    stats = stats_for(image, norm_record(_config("scale_range", None).data))
    y = stats.normalize(image.read()) * 2.0  # beyond [0, 1]: what unsampled pixels may give
    undone = stats.denormalize(y)
    assert stats.out_lo is None and undone.max() > stats.offset[0] + stats.scale[0]
