"""GUI responsiveness and GUI-vs-headless throughput of napari-ssl (issue #5), measured by hand.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/gui_latency.py [--epochs 4] [--why]

In a real ``napari.Viewer(show=True)`` it drives the Train and Reconstruct docks as a user would
(Start / Reconstruct clicked, the Qt event loop running) while a 10 ms ``QTimer`` records its
tick-to-tick intervals: a long interval is a GUI stall. The same training and reconstruction run
headless first (``engine.trainer.train`` and ``inference.reconstruct``, as the CLI calls them), in
the same process with the same settings, for the throughput ratios. The time to the first dock is
measured in a fresh subprocess (napari imported, torch not). torch uses one thread everywhere
(``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``) so that, on a 2-core machine, the Qt
thread keeps a core. Prints a markdown table and one JSON line.

Targets: stall p99 <= 20 ms and max <= 50 ms while training and while reconstructing; GUI
training >= 95 % and GUI reconstruction >= 90 % of headless; first dock shown within 1 s.
``--why`` also explains each gap over 50 ms with napari's performance monitor
(``stall_attribution.py``; it times every Qt event, so measure the ratios without it).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import contextlib
import dataclasses
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import stall_attribution
import tifffile

ROOT = Path(__file__).resolve().parents[1]
SEM = ROOT / "src" / "napari_ssl" / "sample_data" / "sem_retic_2d.tif"
MANIFEST = ROOT / "src" / "napari_ssl" / "napari.yaml"
TARGETS = {"stall_p99_ms": 20.0, "stall_max_ms": 50.0, "train_ratio": 0.95, "recon_ratio": 0.90,
           "first_dock_s": 1.0}  # fmt: skip


# ----- helpers -------------------------------------------------------------------------------
def wait_until(predicate: Any, timeout_s: float, poll_ms: int = 25) -> bool:
    """Run the Qt event loop until ``predicate()`` is true (or the timeout)."""
    from qtpy.QtCore import QEventLoop, QTimer

    if predicate():
        return True
    loop, deadline = QEventLoop(), time.perf_counter() + timeout_s
    poll = QTimer(interval=poll_ms)
    poll.timeout.connect(lambda: (predicate() or time.perf_counter() > deadline) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()
    return bool(predicate())


class StallMeter:
    """A 10 ms precise QTimer; ``intervals_ms`` are the gaps between its ticks."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer(interval=interval_ms)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self) -> StallMeter:
        self.ticks.clear()
        self.timer.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.timer.stop()

    def summary(self) -> dict[str, float]:
        gaps = np.diff(self.ticks) * 1000.0
        return {
            "ticks": len(self.ticks),
            "p50_ms": round(float(np.percentile(gaps, 50)), 2),
            "p99_ms": round(float(np.percentile(gaps, 99)), 2),
            "max_ms": round(float(gaps.max()), 2),
            "over_50ms": int((gaps > 50).sum()),
        }


class SlotTimes:
    """Time spent in napari-ssl's own GUI-thread slots, to tell our work from Qt's painting."""

    SLOTS = (("napari_ssl.widgets.train_dock", "TrainDock", ("_on_event", "_apply")),
             ("napari_ssl.widgets.loss_plot", "LossPlot", ("tick",)),
             ("napari_ssl.widgets.reconstruct_dock", "ReconstructDock",
              ("_on_progress", "_apply", "_on_result")),
             ("napari_ssl.widgets.gui_collection", "_Collection", ("tick",)))  # fmt: skip

    def __init__(self) -> None:
        import importlib

        self.ms: dict[str, list[float]] = {}
        for module, cls_name, names in self.SLOTS:
            cls = getattr(importlib.import_module(module), cls_name)
            for name in names:
                setattr(cls, name, self._timed(getattr(cls, name), f"{cls_name}.{name}"))

    def _timed(self, method: Any, key: str) -> Any:
        times = self.ms.setdefault(key, [])

        @functools.wraps(method)
        def timed(obj: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return method(obj, *args, **kwargs)
            finally:
                times.append((time.perf_counter() - t) * 1000.0)

        return timed

    def summary(self) -> dict[str, dict[str, float]]:
        return {key: {"calls": len(v), "max_ms": round(max(v), 1)} for key, v in self.ms.items()
                if v}  # fmt: skip


def make_cfg(epochs: int, patches_per_epoch: int) -> Any:
    from napari_ssl.config import Config

    cfg = Config()
    cfg.data.patch_size = (64, 64)
    cfg.train.batch_size, cfg.train.epochs, cfg.train.patience = 4, epochs, 0
    cfg.train.patches_per_epoch = patches_per_epoch
    cfg.system.device = "cpu"  # default U-Net: feature maps 16..256
    return cfg


def rates(events: list[Any], wall_s: float) -> dict[str, float]:
    """Median Step rate (first window, the warm-up, left out), mean Epoch rate, overall rate."""
    from napari_ssl.engine import events as ev

    steps = [e.patches_per_s for e in events if isinstance(e, ev.Step)][1:]
    epochs = [e.patches_per_s for e in events if isinstance(e, ev.Epoch)]
    started = next(e for e in events if isinstance(e, ev.Started))
    if not isinstance(events[-1], ev.Finished):
        raise SystemExit(f"training did not finish: {events[-1]}")
    return {
        "step_patches_per_s": round(statistics.median(steps), 2),
        "epoch_patches_per_s": round(statistics.mean(epochs), 2),
        "overall_patches_per_s": round(started.train_patches * started.epochs / wall_s, 2),
        "wall_s": round(wall_s, 2),
    }


# ----- (0) first dock, in a fresh process -------------------------------------------------
DOCK_NAMES = ("Data and pretext", "Train", "Reconstruct", "Export")


def first_dock(name: str) -> dict[str, Any]:
    """Child process: time from asking napari for dock ``name`` to it being painted."""
    import napari
    from npe2 import PluginManager, PluginManifest
    from qtpy.QtCore import QEvent, QObject

    viewer = napari.Viewer(show=True)
    wait_until(lambda: False, 1.0)  # let the window come up
    pm = PluginManager.instance()
    if "napari-ssl" not in pm._manifests:  # not pip-installed here: register as napari would
        pm.register(PluginManifest.from_file(MANIFEST))
    torch_before = "torch" in sys.modules
    painted: list[float] = []

    class PaintSpy(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Paint and not painted:
                painted.append(time.perf_counter())
            return False

    spy = PaintSpy()
    t0 = time.perf_counter()
    _, widget = viewer.window.add_plugin_dock_widget("napari-ssl", name)
    widget.installEventFilter(spy)
    t_returned = time.perf_counter()
    wait_until(lambda: bool(painted) and widget.isVisible(), 10.0, poll_ms=1)
    result = {
        "dock": name,
        "returned_s": round(t_returned - t0, 3),
        "painted_s": round(painted[0] - t0, 3) if painted else None,
        "torch_before": torch_before,
        "torch_loaded_by_then": "torch" in sys.modules,  # maybe in a thread (the device probe)
    }
    viewer.close()  # the device probe may still run: Python joins its thread at exit
    return result


def run_first_docks() -> list[dict[str, Any]]:
    rows = []
    for name in DOCK_NAMES:
        out = subprocess.run([sys.executable, __file__, "--first-dock", name],
                             capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


# ----- (a) and (c): headless ------------------------------------------------------------------
def headless_train(image: np.ndarray, cfg: Any, tmp: Path) -> tuple[dict[str, Any], str]:
    from napari_ssl.data.images import as_image
    from napari_ssl.engine.trainer import train
    from napari_ssl.results import ResultsLayout

    t = time.perf_counter()
    events = list(train(cfg, [as_image(image, "sem", 2)], layout=ResultsLayout(tmp, "cli", 1)))
    result = rates(events, time.perf_counter() - t)
    return result, events[-1].best_checkpoint


def headless_reconstruct(checkpoint: str, image: np.ndarray) -> float:
    from napari_ssl.data.images import as_image
    from napari_ssl.engine.checkpoints import load_trained
    from napari_ssl.inference.reconstruct import reconstruct

    t = time.perf_counter()  # the dock's worker also loads the checkpoint
    reconstruct(load_trained(checkpoint), as_image(image, "big", 2), overlap=0.25)
    return time.perf_counter() - t


# ----- (b) and (d): the docks -----------------------------------------------------------------
def gui_runs(
    crop: np.ndarray, big: np.ndarray, cfg: Any, checkpoint: str, tmp: Path, why: bool
) -> dict:
    import napari

    from napari_ssl.widgets.launch import add_docks

    slots = SlotTimes()  # before the docks connect their slots
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    recorder = stall_attribution.Recorder(viewer) if why else None
    docks = add_docks(viewer)
    data, train, recon = docks["Data and pretext"], docks["Train"], docks["Reconstruct"]
    viewer.add_image(crop, name="sem")
    viewer.add_image(big, name="big")
    data.select(["sem"])
    data.patch_xy.setValue(cfg.data.patch_size[0])
    state = data.state
    state.update_cfg(train=dataclasses.replace(
        state.cfg.train, patches_per_epoch=cfg.train.patches_per_epoch, patience=0))  # fmt: skip
    train.epochs.setValue(cfg.train.epochs)
    train.batch.setValue(cfg.train.batch_size)
    train.result_dir.setText(str(tmp))
    train.run_name.setText("gui")
    viewer.window._wrapped_dock_widgets["Train"].raise_()  # its tab shown: the plot draws
    wait_until(lambda: train.device.findData("cpu") >= 0, 60.0)  # the device probe (torch)
    train.device.setCurrentIndex(train.device.findData("cpu"))
    meter = StallMeter()
    with meter:
        wait_until(lambda: False, 2.0)
    idle = meter.summary()

    from napari_ssl.engine import events as ev

    events: list[Any] = []
    gaps: dict[str, list[dict[str, Any]]] = {}
    with meter, _recording(recorder, meter, gaps, "training"):
        t = time.perf_counter()
        train.start_button.click()
        train.session.worker.yielded.connect(events.append)
        wait_until(lambda: not train.state.running, 600.0)
        wall = time.perf_counter() - t
    training = {**rates(events, wall), "stalls": meter.summary(),
                "previews": sum(isinstance(e, ev.Preview) for e in events),
                "plot_redraws": train.plot.redraws}  # fmt: skip

    viewer.window._wrapped_dock_widgets["Reconstruct"].raise_()
    recon.checkpoint.setText(checkpoint)
    recon.select(["big"])
    recon.overlap.setValue(0.25)
    with meter, _recording(recorder, meter, gaps, "reconstructing"):
        t = time.perf_counter()
        recon.run_button.click()
        wait_until(lambda: recon.worker is None, 600.0)
        seconds = time.perf_counter() - t
    if "big [reconstruction]" not in viewer.layers:
        raise SystemExit("the Reconstruct dock added no layer")
    viewer.close()
    return {"idle": idle, "train": training, "slots": slots.summary(), "long_gaps": gaps,
            "reconstruct": {"seconds": round(seconds, 2), "stalls": meter.summary()}}  # fmt: skip


@contextlib.contextmanager
def _recording(recorder: Any, meter: StallMeter, gaps: dict, phase: str) -> Iterator[None]:
    """With ``--why``: the monitor's events of ``phase``, explaining its long gaps into ``gaps``
    (the meter's ticks are read before the meter restarts)."""
    if recorder is None:
        yield
        return
    recorder.on = True
    try:
        yield
    finally:
        recorder.on = False
        gaps[phase] = stall_attribution.explain(list(meter.ticks), recorder.take())


# ----- report ---------------------------------------------------------------------------------
def report(res: dict[str, Any]) -> None:
    g, h = res["gui"], res["headless"]
    rows = [("idle (2 s)", g["idle"]), ("training", g["train"]["stalls"]),
            ("reconstructing", g["reconstruct"]["stalls"])]  # fmt: skip
    print("\n| GUI thread, 10 ms QTimer | ticks | p50 ms | p99 ms | max ms | >50 ms |")
    print("|---|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['ticks']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | "
              f"{s['over_50ms']} |")  # fmt: skip
    print("\n| napari-ssl slot on the GUI thread | calls | max ms |")
    print("|---|---|---|")
    for key, v in g["slots"].items():
        print(f"| {key} | {v['calls']} | {v['max_ms']} |")
    print("\n| throughput | headless | GUI | GUI / headless | target |")
    print("|---|---|---|---|---|")
    for key in ("step_patches_per_s", "epoch_patches_per_s", "overall_patches_per_s"):
        r = res["ratios"][f"train_{key}"]
        print(f"| train {key} | {h['train'][key]} | {g['train'][key]} | {r:.3f} | >= 0.95 |")
    rr = res["ratios"]["reconstruct"]
    side = res["settings"]["recon_size"]
    print(f"| reconstruct {side}² (s) | {h['reconstruct_s']} | {g['reconstruct']['seconds']} |"
          f" {rr:.3f} | >= 0.90 |")  # fmt: skip
    print("\n| first dock (fresh process) | call returned s | painted s | torch loaded by then |")
    print("|---|---|---|---|")
    for fd in res["first_dock"]:
        print(
            f"| {fd['dock']} | {fd['returned_s']} | {fd['painted_s']} | "
            f"{fd['torch_loaded_by_then']} |"
        )
    for phase, rows in g["long_gaps"].items():
        stall_attribution.report(phase, rows)
    print("\n" + json.dumps(res))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--patches-per-epoch", type=int, default=256)
    p.add_argument("--recon-size", type=int, default=1024, help="side of the reconstructed image")
    p.add_argument("--why", action="store_true", help="explain the gaps over 50 ms (slower)")
    p.add_argument("--first-dock", choices=DOCK_NAMES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.first_dock:
        print(json.dumps(first_dock(args.first_dock)), flush=True)
        return
    res: dict[str, Any] = {"first_dock": run_first_docks()}
    import torch

    torch.set_num_threads(1)
    sem = tifffile.imread(SEM)
    size = args.recon_size
    crop = sem[:512, :512].copy()
    big = np.pad(sem, [(0, max(0, size - n)) for n in sem.shape], mode="symmetric")[:size, :size]
    cfg = make_cfg(args.epochs, args.patches_per_epoch)
    with tempfile.TemporaryDirectory(prefix="gui-latency-") as tmp:
        train_h, ckpt = headless_train(crop, cfg, Path(tmp))
        res["headless"] = {"train": train_h, "reconstruct_s": round(
            headless_reconstruct(ckpt, big), 2)}  # fmt: skip
        if args.why:
            stall_attribution.enable()  # before napari is imported
        res["gui"] = gui_runs(crop, big, cfg, ckpt, Path(tmp), args.why)
    res["ratios"] = {
        **{f"train_{k}": res["gui"]["train"][k] / train_h[k]
           for k in ("step_patches_per_s", "epoch_patches_per_s", "overall_patches_per_s")},
        "reconstruct": res["headless"]["reconstruct_s"] / res["gui"]["reconstruct"]["seconds"],
    }  # fmt: skip
    res["settings"] = {"torch_threads": torch.get_num_threads(), "patch": 64, "batch": 4,
                       "epochs": args.epochs, "patches_per_epoch": args.patches_per_epoch,
                       "model": "unet 16..256", "torch": torch.__version__,
                       "recon_size": args.recon_size}  # fmt: skip
    res["targets"] = TARGETS
    report(res)


if __name__ == "__main__":
    main()
