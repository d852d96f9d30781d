"""The pretext preview's steps: the crop around a point, Start's checks."""

from __future__ import annotations

import dataclasses

import pytest

from napari_ssl.config import Config, ConfigError
from napari_ssl.pretext.preview import check_pretext, preview_region


def test_the_crop_is_centred_where_asked_and_stays_inside() -> None:
    shape, limits = (120, 1536, 1536), (64, 512, 512)
    assert preview_region(shape, limits) == (slice(28, 92), slice(512, 1024), slice(512, 1024))
    around = preview_region(shape, limits, (71.5, 767.5, 767.5))  # the middle of those pixels
    assert around == (slice(40, 104), slice(512, 1024), slice(512, 1024))
    near_edges = preview_region(shape, limits, (5.0, 1500.0, -30.0))
    assert near_edges == (slice(0, 64), slice(1024, 1536), slice(0, 512))
    assert preview_region((40, 30), (64, 64), (3.0, 29.0)) == (slice(0, 40), slice(0, 30))


def test_masking_is_checked_as_start_checks_it() -> None:
    cfg = Config()
    cfg.pretext.task, cfg.model.vit_token_size = "masking", 10
    cfg.data = dataclasses.replace(cfg.data, patch_size=(64, 64))
    with pytest.raises(ConfigError) as refused:
        check_pretext(cfg)
    assert "must be a multiple of model.vit_token_size (10)" in str(refused.value)
    cfg.model.architecture = "mae"
    with pytest.raises(ConfigError) as at_start:
        cfg.validate()  # what Start runs: the very same words
    assert str(at_start.value) == str(refused.value)
    cfg.model.vit_token_size = 16
    check_pretext(cfg)
    cfg.pretext.task, cfg.model.vit_token_size = "crappify", 10  # not used by crappify
    check_pretext(cfg)
