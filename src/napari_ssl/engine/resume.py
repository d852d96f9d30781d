"""Starting a run from a checkpoint (continue, or fine-tune from its weights), and what a run
writes before its first epoch (config files, the model picture, augmented training pairs)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from napari_ssl.config import Config, save_yaml
from napari_ssl.engine import checkpoints as ckpt
from napari_ssl.engine import distributed as dist
from napari_ssl.engine.state import RunState
from napari_ssl.results import ResultsLayout

if TYPE_CHECKING:
    from napari_ssl.engine.setup import Run


def checkpoint_to_load(
    cfg: Config, layout: ResultsLayout, resume: str | Path | None
) -> Path | None:
    """The checkpoint a run starts from: ``resume``, else MODEL.LOAD_CHECKPOINT's (None: fresh)."""
    if resume is not None:
        return Path(resume)
    if not cfg.model.load_checkpoint:
        return None
    if cfg.model.checkpoint_file:
        return Path(cfg.model.checkpoint_file)
    for path in (layout.last_checkpoint, layout.best_checkpoint):
        if path.exists():
            return path
    raise ckpt.CheckpointError(
        "MODEL.LOAD_CHECKPOINT is set but PATHS.CHECKPOINT_FILE is empty and this run has no "
        f"checkpoint yet in {layout.checkpoints_dir}: give the file to start from."
    )


_COMPARED = ("architecture", "feature_maps", "kernel_size", "norm", "upsample_layer")
_COMPARED_MAE = ("vit_token_size", "vit_mlp_ratio", "mae_dec_hidden_size", "mae_dec_num_layers",
                 "mae_dec_num_heads", "mae_dec_mlp_dims")  # fmt: skip


def model_differences(data: dict[str, Any], cfg: Config, in_channels: int) -> list[str]:
    """The model settings, in BiaPy's keys, of the checkpoint ``data`` that differ from ``cfg``
    (e.g. "MODEL.ARCHITECTURE: checkpoint 'unet', config 'resunet'"); [] when unknown."""
    from napari_ssl.biapy_config import BIAPY_KEYS
    from napari_ssl.models.mae_config import vit_dims

    try:
        theirs = ckpt.config_of(data)
        channels = ckpt.in_channels_of(data, theirs)
    except (ckpt.CheckpointError, KeyError, TypeError, ValueError):
        return []
    pairs = {
        "PROBLEM.NDIM": (f"{theirs.data.ndim}D", f"{cfg.data.ndim}D"),
        "DATA.PATCH_SIZE channels": (channels, in_channels),
    }
    mae = theirs.model.architecture == cfg.model.architecture == "mae"
    for name in _COMPARED + (_COMPARED_MAE if mae else ()):
        key = BIAPY_KEYS[f"model.{name}"]
        pairs[key] = (getattr(theirs.model, name), getattr(cfg.model, name))
    if mae:
        vit = ("MODEL.VIT_EMBED_DIM", "MODEL.VIT_NUM_LAYERS", "MODEL.VIT_NUM_HEADS")
        for key, a, b in zip(vit, vit_dims(theirs.model), vit_dims(cfg.model), strict=True):
            pairs[key] = (a, b)
    return [
        f"{key}: checkpoint {_shown(a)}, config {_shown(b)}"
        for key, (a, b) in pairs.items()
        if _shown(a) != _shown(b)
    ]


def _shown(value: Any) -> str:
    """A setting as a config shows it (tuples as lists)."""
    return repr(list(value)) if isinstance(value, (tuple, list)) else repr(value)


def restore(run: Run, path: Path, full: bool, explicit: bool) -> dict[str, Any]:
    """Load weights; with ``full`` (same run) also optimizer, epoch, history and RNG states,
    and return that training state (empty when only the weights are loaded).

    ``explicit``: the user asked to continue this file, so one without a training state is an
    error rather than a silent fine-tune.
    """
    data = ckpt.read_checkpoint(path)
    try:
        ckpt.load_weights(run.core_model, data["model"], f"'{path.name}'")
    except ckpt.CheckpointError as err:
        differences = model_differences(data, run.cfg, run.in_channels)
        if not differences:
            raise
        raise ckpt.CheckpointError(
            f"'{path.name}' does not fit this model: the checkpoint and this config differ in "
            f"{'; '.join(differences)}. Use the checkpoint's settings, or another checkpoint."
        ) from err
    state = data.get("train_state")
    if explicit and (state is None or "optimizer" not in data):
        raise ckpt.CheckpointError(
            f"'{path.name}' has no training state to continue from (only a -last.pth has one): "
            "pick the run's -last.pth, or fine-tune from this file instead."
        )
    if not full or state is None or "optimizer" not in data:
        run.notes.append(f"weights loaded from {path.name} (fine-tuning: new optimizer, epoch 0)")
        write_start_outputs(run)
        return {}
    done, epochs = int(state["epoch"]), run.cfg.train.epochs
    left = f"'{path.name}' has trained {done} epoch{'s' * (done != 1)} already"
    if done >= epochs and explicit:
        raise ckpt.CheckpointError(
            f"{left}: to continue it, raise train.epochs (BiaPy TRAIN.EPOCHS, {epochs}) above "
            f"{done}"
        )
    if done >= epochs:  # this run's own checkpoint (MODEL.LOAD_CHECKPOINT): on to the test
        run.notes.append(f"{left} (train.epochs {epochs}): nothing left to train")
    run.optimizer.load_state_dict(data["optimizer"][0])
    run.state = RunState.from_dict(state)
    run.start_epoch = run.state.epoch
    torch.set_rng_state(state["torch_rng"])
    run.generator.set_state(state["generator"])
    try:
        run.task_generator.set_state(state["task_generator"])
    except RuntimeError:  # saved on another device type (GPU run continued on a CPU, ...)
        run.task_generator.manual_seed(run.cfg.system.seed + run.state.epoch)
        run.notes.append("noise/mask random stream reseeded (checkpoint from another device)")
    run.sampler.rng.bit_generator.state = json.loads(state["sampler_rng"])
    if dist.is_main_process():
        write_config_files(run)
    run.notes.append(
        f"resumed from {path.name}: epoch {done + 1}, stopped part-way, runs again whole from the "
        "weights it had reached" if state.get("partial_epoch") else
        f"resumed from {path.name} after epoch {done}" if done else
        f"resumed from {path.name}: no epoch had finished, starts from epoch 1"
    )  # fmt: skip
    return state


def write_config_files(run: Run) -> None:
    """The run's config (ours and BiaPy's layout) and fixed normalisation values, as it trains
    now (a resumed run may have been given more epochs, another schedule...)."""
    from napari_ssl.results import save_normalization_values

    cfg = run.cfg
    write_config_yamls(cfg, run.layout)
    save_normalization_values(run.layout, cfg.data.normalization_mean, cfg.data.normalization_std)


def write_config_yamls(cfg: Config, layout: ResultsLayout) -> None:
    """``config_files/``: the config as run, ours and in BiaPy's keys (BiaPy's copy)."""
    import yaml

    from napari_ssl.biapy_export import to_biapy

    save_yaml(cfg, layout.config_dir / f"{layout.name}.napari-ssl.yaml")
    layout.config_file.write_text(yaml.safe_dump(to_biapy(cfg), sort_keys=False))


def write_start_outputs(run: Run) -> None:
    """Config files, the model picture and a few augmented training pairs."""
    if not dist.is_main_process():
        return
    from napari_ssl.charts import write_model_plot
    from napari_ssl.tiffs import save_tif

    layout, cfg = run.layout, run.cfg
    write_config_files(run)
    raw, idx = run.sampler.sample(min(3, cfg.train.batch_size))
    example = run.task.example_args(raw[:1], idx[:1])
    with contextlib.suppress(Exception):  # a picture must never stop training
        write_model_plot(run.model, example, layout.model_plot)
    for k, (inp, target) in enumerate(run.task.examples(run.augment(raw), idx, run.task_generator)):
        save_tif(layout.aug(f"pair{k}_input"), inp)
        save_tif(layout.aug(f"pair{k}_target"), target)
