"""The Data dock's masking fields: the mask ratio a grid hides, cubic 3D patches, the masked
preview in 3D and the checks it shares with Start."""

from __future__ import annotations

from dataclasses import replace

import pytest
from gui_helpers import screenshot

pytestmark = pytest.mark.gui


def test_the_mask_ratio_shows_what_a_grid_hides(docks):
    """A grid hides half the tokens: the greyed Mask ratio says 0.5; the ratio chosen for random
    masks (MAE's 0.75 at first, or a loaded config's) comes back with them."""
    data = docks["Data and pretext"]
    data.task.setCurrentText("masking")
    shown = (data.mask_type.currentText(), data.ratio.value(), data.ratio.isEnabled())
    assert shown == ("grid", 0.5, False)
    data.mask_type.setCurrentText("random")
    assert data.ratio.isEnabled() and data.ratio.value() == 0.75
    data.ratio.setValue(0.6)
    data.mask_type.setCurrentText("grid")
    assert data.ratio.value() == 0.5 and data.state.cfg.pretext.mask_ratio == 0.5
    data.mask_type.setCurrentText("random")
    assert data.ratio.value() == 0.6 and data.state.cfg.pretext.mask_ratio == 0.6
    cfg = data.state.cfg
    data.state.update_cfg(pretext=replace(cfg.pretext, mask_type="grid", mask_ratio=0.5))
    data.state.update_cfg(pretext=replace(cfg.pretext, mask_type="random", mask_ratio=0.4))
    assert (data.ratio.value(), data.ratio.isEnabled()) == (0.4, True)  # a config's own


def test_3d_masking_takes_cubic_patches(viewer, docks, nuclei_3d):
    data = docks["Data and pretext"]
    viewer.add_image(nuclei_3d[:, :128, :128], name="nuclei")
    assert data.state.cfg.data.patch_size == (64, 128, 128) and data.patch_z.isEnabled()
    data.task.setCurrentText("masking")
    assert data.state.cfg.data.patch_size == (128, 128, 128) and not data.patch_z.isEnabled()
    data.patch_xy.setValue(64)
    assert data.state.cfg.data.patch_size == (64, 64, 64) and data.patch_z.value() == 64
    docks["Train"]._config().validate()  # what Start checks: no "must be cubic"


def test_masking_preview_3d(qtbot, viewer, docks, nuclei_3d):
    data = docks["Data and pretext"]
    viewer.add_image(nuclei_3d, name="nuclei", scale=(0.29, 0.26, 0.26))
    data.task.setCurrentText("masking")
    data.mask_type.setCurrentText("random")
    data.ratio.setValue(0.75)
    data.token.setValue(16)
    data.run_preview()  # 4 M voxels: in the preview thread
    qtbot.waitUntil(lambda: "nuclei [masked]" in viewer.layers, timeout=10_000)
    masked = viewer.layers["nuclei [masked]"]
    assert masked.data.shape == nuclei_3d.shape
    assert tuple(masked.scale) == (0.29, 0.26, 0.26)
    hidden = masked.data != nuclei_3d
    assert 0.5 < hidden.mean() < 0.9  # about 75% of the tokens hidden
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, 30 * 0.29)
    screenshot(viewer, "data_dock_masking_3d", "Data and pretext")


def test_masking_preview_refuses_what_start_refuses(qtbot, viewer, docks, notes, sem_layer):
    """Token 10 does not divide the 64 patch: the preview says so in Start's words, draws
    nothing, and draws once the token size is fixed."""
    data = docks["Data and pretext"]
    data.task.setCurrentText("masking")
    data.patch_xy.setValue(64)
    data.token.setValue(10)
    data.preview.click()
    refused = data.preview_hint.text()
    assert "sem [masked]" not in viewer.layers and not data.preview_hint.isHidden()
    assert refused.startswith("Preview failed: ")
    assert "must be a multiple of 'Token size' (10)" in refused and notes[-1][1] == refused
    docks["Train"].start_button.click()
    assert notes[-1][1].startswith("Cannot start training: ")
    assert notes[-1][1].removeprefix("Cannot start training: ") == refused.removeprefix(
        "Preview failed: "
    )
    data.token.setValue(16)  # fixed: the preview asked for is drawn
    qtbot.waitUntil(lambda: "sem [masked]" in viewer.layers, timeout=5000)
    assert data.preview_hint.isHidden()  # the whole image: nothing to say
    data.token.setValue(10)  # refused again: the preview left is said to be of the last valid
    qtbot.waitUntil(lambda: not data.preview_hint.isHidden(), timeout=5000)
    assert data.preview_hint.text().startswith(refused)
    assert data.preview_hint.text().endswith("are of the last parameters that worked.")
