"""Test step: reconstruct each test image, score it against the original, write the outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from napari_ssl.config import Config
from napari_ssl.data.images import Image
from napari_ssl.engine import events as ev
from napari_ssl.engine.checkpoints import TrainedModel, load_trained
from napari_ssl.engine.tasks import HIDDEN
from napari_ssl.inference.metrics import image_metrics, masked_metrics
from napari_ssl.inference.reconstruct import reconstruct
from napari_ssl.results import MAE_CHECK_KINDS, ResultsLayout, write_metrics_csv
from napari_ssl.tiffs import save_tif


def evaluate(
    trained: TrainedModel,
    images: list[Image],
    layout: ResultsLayout,
    *,
    device: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Write per-image reconstructions (and MAE checks) and the metrics CSV; return the means."""
    masking = trained.cfg.pretext.task == "masking"
    rows = []
    for image in images:
        outputs = reconstruct(
            trained, image, device=device, seed=seed, batch_size=batch_size, degrade=not masking
        )
        original = image.read().astype(np.float32)
        scale = image.scale
        if masking:
            scores = image_metrics(outputs["reconstruction_and_visible"], original)
            scores.update(
                masked_metrics(outputs["reconstruction"], original, outputs[HIDDEN] > 0.5)
            )
            for view in MAE_CHECK_KINDS:
                save_tif(layout.mae_check(image.name, view), outputs[view], scale)
            save_tif(layout.per_image(image.name), outputs["reconstruction_and_visible"], scale)
        else:
            scores = image_metrics(outputs["reconstruction"], original)
            save_tif(layout.per_image(image.name), outputs["reconstruction"], scale)
        rows.append({"image": image.name, **scores})
        log(f"  test {image.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    write_metrics_csv(rows, layout.metrics_csv)
    keys = [k for k in rows[0] if k != "image"]
    return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}


def with_test_settings(trained: TrainedModel, cfg: Config) -> TrainedModel:
    """The checkpoint's model (MAE masks included) and normalisation, with the config's crappify
    degradation and test tiling: what BiaPy 3.7.1 takes from each when it tests a checkpoint."""
    own = trained.cfg
    pretext = replace(own.pretext, noise=cfg.pretext.noise,
                      resizing_factor=cfg.pretext.resizing_factor)  # fmt: skip
    data = replace(own.data, test_overlap=cfg.data.test_overlap, test_padding=cfg.data.test_padding)
    return replace(trained, cfg=replace(own, pretext=pretext, data=data))


def score_trained(
    trained: TrainedModel,
    cfg: Config,
    layout: ResultsLayout,
    images: list[Image],
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """The test step of a job of ``cfg``: :func:`evaluate` with :func:`with_test_settings`, on
    its device, seed and test batch."""
    return evaluate(
        with_test_settings(trained, cfg), images, layout, device=cfg.system.device,
        seed=cfg.system.seed, batch_size=cfg.test.batch_size, log=log,
    )  # fmt: skip


def score_test_images(
    cfg: Config, layout: ResultsLayout, images: list[Image], checkpoint: str
) -> Iterator[ev.Testing | ev.Tested]:
    """:func:`score_trained` after a training, as events (the Train dock's; the CLI prints
    lines)."""
    yield ev.Testing(len(images), checkpoint)
    metrics = score_trained(load_trained(checkpoint), cfg, layout, images, log=lambda _line: None)
    yield ev.Tested(len(images), metrics, str(layout.run_dir))
