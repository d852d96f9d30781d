"""Edge cases of a run: no validation data, channels recorded, continuing the wrong file,
stacks read as channels, bad device names."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml

from napari_ssl.config import Config, ConfigError
from napari_ssl.data.folders import load_image
from napari_ssl.data.images import DataError, as_image
from napari_ssl.engine import events as ev
from napari_ssl.results import ResultsLayout
from test_training import of_type, one_thread, run_events, sem_crops, tiny_config  # noqa: F401


def test_without_validation_the_best_follows_this_epochs_train_loss(tmp_path, sem_2d) -> None:
    cfg = tiny_config(epochs=2)
    cfg.data.val_fraction = 0.0
    epochs = of_type(run_events(cfg, sem_crops(sem_2d), ResultsLayout(tmp_path, "j", 1)), ev.Epoch)
    assert [e.val_loss for e in epochs] == [e.train_loss for e in epochs]
    assert epochs[0].best  # epoch 1 can be the best one


def test_multichannel_run_records_its_channels_for_biapy(tmp_path, sem_2d) -> None:
    two = np.stack([sem_2d[:96, :96], sem_2d[96:192, :96]])  # (C, Y, X)
    layout = ResultsLayout(tmp_path, "j", 1)
    events = run_events(tiny_config(epochs=1), [as_image(two, "two", 2, channel_axis=0)], layout)
    assert of_type(events, ev.Finished)
    written = yaml.safe_load((layout.config_dir / "j.yaml").read_text())
    assert written["DATA"]["PATCH_SIZE"][-1] == 2


def test_continuing_a_file_without_training_state_is_refused(tmp_path, sem_2d) -> None:
    layout = ResultsLayout(tmp_path, "j", 1)
    images = sem_crops(sem_2d)
    run_events(tiny_config(epochs=1), images, layout)
    events = run_events(tiny_config(epochs=2), images, layout, resume=layout.best_checkpoint)
    failed = of_type(events, ev.Failed)
    assert failed and "no training state" in failed[0].message
    assert "-last.pth" in failed[0].message


def test_a_zyx_stack_is_not_read_as_channels_of_a_2d_image(tmp_path, nuclei_3d) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, nuclei_3d[:10, :64, :48], imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(DataError, match=r"stack .*choose 3D"):
        load_image(path, 2)
    assert load_image(path, 3).array.shape == (1, 10, 64, 48)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU0"])
def test_unknown_device_names_are_refused_with_the_choices(device: str) -> None:
    cfg = Config()
    cfg.system.device = device
    with pytest.raises(ConfigError, match="auto, cpu, cuda, cuda:N or mps"):
        cfg.validate()
