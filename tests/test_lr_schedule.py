"""Learning-rate schedules (BiaPy's TRAIN.LR_SCHEDULER): values, the loop, resuming, YAML."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from biapy_peer import run_biapy
from napari_ssl.biapy_config import from_biapy
from napari_ssl.biapy_export import to_biapy
from napari_ssl.config import Config, ConfigError, TrainConfig
from napari_ssl.engine import events as ev
from napari_ssl.engine.lr_schedule import warmup_cosine, warmup_note, warmup_table
from napari_ssl.engine.trainer import TrainingControl, train
from napari_ssl.results import ResultsLayout
from napari_ssl.validation import validate_config
from test_training import of_type, run_events, sem_crops, tiny_config

COSINE_CASES = [  # (epochs, lr, min_lr, warmup_epochs, cosine_decay_fraction)
    (10, 1e-3, 1e-5, 3, -1.0),
    (10, 1e-3, 0.0, 0, -1.0),
    (20, 5e-4, 1e-6, 2, 0.5),
    (7, 1e-4, 1e-6, 0, 0.3),
]
TABLE_EPOCHS = (5, 40, 150, 400)


def _train(**values: object) -> TrainConfig:
    return dataclasses.replace(TrainConfig(), **values)


def _lrs(events: list[ev.Event]) -> list[float]:
    return [e.lr for e in of_type(events, ev.Step)]


def test_schedules_match_biapy(biapy_python: Path) -> None:
    """warmupcosine at fractional epochs and warmupreduceonplateau's table, as BiaPy computes."""
    points = [k / 4 for k in range(4 * 20)]
    cases = [_train(epochs=e, lr=lr, min_lr=lo, warmup_epochs=w, cosine_decay_fraction=f)
             for e, lr, lo, w, f in COSINE_CASES]  # fmt: skip
    ours = {
        "cosine": [[warmup_cosine(t, x) for x in points if x < t.epochs] for t in cases],
        "table": [warmup_table(1e-3, epochs) for epochs in TABLE_EPOCHS],
    }
    theirs = json.loads(
        run_biapy(
            biapy_python,
            """
            import json, sys, torch
            from biapy.engine.schedulers.warmup_cosine_decay import WarmUpCosineDecayScheduler
            from biapy.engine.schedulers.warmup_reduce_on_plateau import (
                WarmUpReduceOnPlateauScheduler)
            cases, table_epochs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
            opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
            cosine = []
            for epochs, lr, min_lr, warmup, fraction in cases:
                warmup = max(warmup, 0)  # as BiaPy's prepare_optimizer
                start = round(epochs * (1 - fraction)) if fraction > 0 else warmup
                s = WarmUpCosineDecayScheduler(lr, min_lr, warmup, start, epochs)
                points = [k / 4 for k in range(80) if k / 4 < epochs]
                cosine.append([s.adjust_learning_rate(opt, x) for x in points])
            tables = [[WarmUpReduceOnPlateauScheduler(1e-3, e).adjust_learning_rate(opt, k)
                       for k in range(e + 5)] for e in table_epochs]
            print(json.dumps({"cosine": cosine, "table": tables}))
            """,
            json.dumps(COSINE_CASES),
            json.dumps(TABLE_EPOCHS),
        ).splitlines()[-1]
    )
    for mine, biapy in zip(ours["cosine"], theirs["cosine"], strict=True):
        np.testing.assert_allclose(mine, biapy, rtol=1e-12, atol=1e-15)
    for table, biapy, epochs in zip(ours["table"], theirs["table"], TABLE_EPOCHS, strict=True):
        padded = [table[min(k, len(table) - 1)] for k in range(epochs + 5)]
        np.testing.assert_allclose(padded, biapy, rtol=1e-12)


def test_warmup_cosine_shape() -> None:
    t = _train(epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2, cosine_decay_fraction=0.5)
    assert warmup_cosine(t, 0.0) == 0.0 and warmup_cosine(t, 1.0) == pytest.approx(5e-4)
    assert warmup_cosine(t, 2.0) == warmup_cosine(t, 4.9) == 1e-3  # held until epoch 5
    assert warmup_cosine(t, 7.5) == pytest.approx((1e-3 + 1e-5) / 2)
    assert warmup_cosine(t, 9.99) == pytest.approx(1e-5, rel=1e-2)


def test_the_loop_sets_each_steps_rate(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """Each Step reports the rate it trained with: warmupcosine at epoch + step / steps."""
    cfg = tiny_config(epochs=3, lr=1e-3, lr_schedule="warmupcosine", min_lr=1e-5, warmup_epochs=1)
    events = run_events(cfg, sem_crops(sem_2d), ResultsLayout(tmp_path, "job", 1))
    assert isinstance(events[-1], ev.Finished)
    steps = events[0].steps_per_epoch
    expected = [warmup_cosine(cfg.train, (s.step - 1) / steps) for s in of_type(events, ev.Step)]
    assert _lrs(events) == pytest.approx(expected)
    assert _lrs(events)[0] == 0.0 and max(_lrs(events)) == pytest.approx(1e-3)


def test_onecycle_resumes_where_it_stopped(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """Stopped part-way, a onecycle run resumes the cycle at its epoch: the rates of the resumed
    steps are the uninterrupted run's."""
    cfg = tiny_config(epochs=3, patches_per_epoch=12, lr=1e-3, lr_schedule="onecycle")
    images = sem_crops(sem_2d)
    whole = _lrs(run_events(cfg, images, ResultsLayout(tmp_path, "whole", 1)))
    assert max(whole) > 0.9e-3 and whole[0] < 1e-4 and whole[-1] < 1e-6
    part = ResultsLayout(tmp_path, "part", 1)
    control = TrainingControl()
    for event in train(cfg, images, layout=part, control=control):
        if isinstance(event, ev.Step) and event.step == 5:
            control.stop()  # mid-epoch 2: it runs again whole
    resumed = run_events(cfg, images, part, resume=part.last_checkpoint)
    assert isinstance(resumed[-1], ev.Finished)
    assert _lrs(resumed) == pytest.approx(whole[3:])


def test_reduce_on_plateau_lowers_and_resumes(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """lr x factor after ``plateau_patience`` epochs without a better validation loss; the
    counters survive a resume."""
    cfg = tiny_config(epochs=4, lr=1e-3, lr_schedule="reduceonplateau", min_lr=2e-4,
                      plateau_factor=0.5, plateau_patience=0, patience=0)  # fmt: skip
    images = sem_crops(sem_2d)
    layout = ResultsLayout(tmp_path, "job", 1)
    events = run_events(cfg, images, layout)
    val = [e.val_loss for e in of_type(events, ev.Epoch)]
    lr, best, per_epoch = 1e-3, math.inf, []
    for loss in val:  # patience 0: every epoch that is not better halves the rate
        per_epoch.append(lr)
        better = loss < best * (1 - 1e-4)  # torch's default relative threshold, as BiaPy's
        lr = lr if better else max(lr * 0.5, 2e-4)
        best = min(best, loss)
    steps = events[0].steps_per_epoch
    assert _lrs(events) == pytest.approx([r for r in per_epoch for _ in range(steps)])
    state = torch.load(layout.last_checkpoint, weights_only=False)["train_state"]["lr_schedule"]
    assert state["best"] == pytest.approx(min(val))


def test_biapy_yaml_keys_round_trip() -> None:
    data = to_biapy(Config())
    data["TRAIN"]["LR_SCHEDULER"] = {
        "NAME": "warmupcosine", "MIN_LR": ["1.E-6"], "WARMUP_COSINE_DECAY_EPOCHS": 5,
        "COSINE_DECAY_FRACTION": 0.4,
    }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every key read: no "not used" warning
        cfg = from_biapy(data)
    t = cfg.train
    assert (t.lr_schedule, t.min_lr, t.warmup_epochs, t.cosine_decay_fraction) == (
        "warmupcosine", 1e-6, 5, 0.4,
    )  # fmt: skip
    again = to_biapy(cfg)["TRAIN"]["LR_SCHEDULER"]
    assert again["NAME"] == "warmupcosine" and again["MIN_LR"] == [1e-6]
    assert from_biapy(to_biapy(cfg)).train == t
    assert from_biapy(to_biapy(Config())).train.lr_schedule == ""  # BiaPy's default: none


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr_schedule": "cosine"}, "train.lr_schedule (BiaPy TRAIN.LR_SCHEDULER.NAME) must be"),
        ({"lr_schedule": "warmupcosine"}, "train.min_lr (BiaPy TRAIN.LR_SCHEDULER.MIN_LR) must"),
        ({"lr_schedule": "reduceonplateau", "min_lr": 1e-6}, "train.plateau_patience"),
        ({"lr_schedule": "reduceonplateau", "min_lr": 1e-6, "plateau_patience": 20, "patience": 20},
         "must be less than train.patience"),
        ({"lr_schedule": "reduceonplateau", "min_lr": 1e-6, "plateau_patience": 3,
          "plateau_factor": 1.0}, "train.plateau_factor"),
        ({"lr_schedule": "cosine"}, "or empty for a constant learning rate; got 'cosine'"),
        ({"lr_schedule": "warmupcosine", "min_lr": 1e-2, "lr": 1e-3},
         "must be >= 0 and at most train.lr (BiaPy TRAIN.LR, 0.001); got 0.01"),
        ({"lr_schedule": "warmupcosine", "min_lr": 1e-6, "cosine_decay_fraction": 1.5},
         "must be in (0, 1]"),
        ({"lr_schedule": "warmupcosine", "min_lr": 1e-6, "epochs": 10, "warmup_epochs": 6,
          "cosine_decay_fraction": 0.5}, "must end by epoch 5"),
    ],
)  # fmt: skip
def test_bad_schedules_are_refused(values: dict[str, object], message: str) -> None:
    cfg = Config()
    cfg.train = dataclasses.replace(cfg.train, **values)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg)


def test_the_run_notes_its_schedule(sem_2d: np.ndarray, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1, lr=1e-3, lr_schedule="reduceonplateau", min_lr=1e-5,
                      plateau_patience=2, patience=0)  # fmt: skip
    started = run_events(cfg, sem_crops(sem_2d), ResultsLayout(tmp_path, "job", 1))[0]
    assert (
        "learning rate (reduceonplateau): 0.001, times 0.5 after 3 epochs without a better "
        "validation loss, down to 1e-05" in started.notes
    )


@pytest.mark.parametrize(
    ("values", "warm_up"),
    [
        ({"lr_schedule": "warmupcosine", "min_lr": 1e-6, "warmup_epochs": 2}, 2),
        ({"lr_schedule": "warmupreduceonplateau"}, 10),
    ],
)
def test_a_warm_up_longer_than_the_run_is_noted(
    sem_2d: np.ndarray, tmp_path: Path, values: dict[str, object], warm_up: int
) -> None:
    cfg = tiny_config(epochs=2, lr=1e-3, **values)
    started = run_events(cfg, sem_crops(sem_2d), ResultsLayout(tmp_path, "job", 1))[0]
    assert (
        f"the warm-up ({warm_up} epochs) does not end before the run (2 epochs) does: the "
        "learning rate never reaches 0.001" in started.notes
    )
    assert warmup_note(dataclasses.replace(cfg.train, epochs=10)) is None  # it reaches lr then


def _stopped_after(cfg, images, layout: ResultsLayout, step: int) -> None:
    control = TrainingControl()
    for event in train(cfg, images, layout=layout, control=control):
        if isinstance(event, ev.Step) and event.step == step:
            control.stop()


def test_a_resumed_run_follows_the_schedule_it_is_given(sem_2d: np.ndarray, tmp_path: Path) -> None:
    """Resumed with another schedule, rate or plateau settings, a run trains as its new config
    says (the config files say so too): constant after warmupcosine runs at train.lr;
    onecycle after constant is the cycle at the step reached; reduceonplateau's new factor and
    floor count, its counters and reached rate carry over when it was reduceonplateau before."""
    images = sem_crops(sem_2d)
    warm = tiny_config(epochs=4, lr=1e-3, lr_schedule="warmupcosine", min_lr=1e-5, warmup_epochs=3)
    part = ResultsLayout(tmp_path, "warm", 1)
    _stopped_after(warm, images, part, 5)  # mid-warm-up, rate 1e-3 x 4/6
    constant = tiny_config(epochs=4, lr=2e-3)
    assert set(_lrs(run_events(constant, images, part, resume=part.last_checkpoint))) == {2e-3}

    cycle = tiny_config(epochs=3, patches_per_epoch=12, lr=1e-3, lr_schedule="onecycle")
    whole = _lrs(run_events(cycle, images, ResultsLayout(tmp_path, "whole", 1)))
    flat = ResultsLayout(tmp_path, "flat", 1)
    _stopped_after(tiny_config(epochs=3, patches_per_epoch=12, lr=1e-3), images, flat, 4)
    assert _lrs(run_events(cycle, images, flat, resume=flat.last_checkpoint)) == pytest.approx(
        whole[3:]
    )

    plateau = {"lr_schedule": "reduceonplateau", "plateau_patience": 0, "patience": 0}
    first = tiny_config(epochs=2, lr=1e-3, min_lr=1e-6, plateau_factor=0.5, **plateau)
    layout = ResultsLayout(tmp_path, "plateau", 1)
    run_events(first, images, layout)
    saved = torch.load(layout.last_checkpoint, weights_only=False)["train_state"]["lr_schedule"]
    then = tiny_config(epochs=6, lr=1e-3, min_lr=2e-4, plateau_factor=0.1, **plateau)
    events = run_events(then, images, layout, resume=layout.last_checkpoint)
    written = yaml.safe_load(layout.config_file.read_text())["TRAIN"]["LR_SCHEDULER"]
    assert (written["MIN_LR"], written["REDUCEONPLATEAU_FACTOR"]) == ([2e-4], 0.1)
    val = [row["val_loss"] for row in events[0].history]
    val += [e.val_loss for e in of_type(events, ev.Epoch)]
    lr, best, per_epoch = saved["lr"], saved["best"], []
    assert best == min(val[:2]) and lr == _lrs(events)[0]
    for loss in val[2:]:  # the new factor (0.1) and floor (2e-4) from epoch 3
        per_epoch.append(lr)
        lr = lr if loss < best * (1 - 1e-4) else max(lr * 0.1, 2e-4)
        best = min(best, loss)
    steps = events[0].steps_per_epoch
    assert _lrs(events) == pytest.approx([r for r in per_epoch for _ in range(steps)])
