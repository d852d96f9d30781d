"""PNG charts of a run: loss and metric curves per epoch, and a picture of the network.

Figures are built with :class:`matplotlib.figure.Figure` on the Agg canvas, never through
pyplot, so no global figure state is created or leaked (safe inside napari and in threads).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from napari_ssl.drawing import MATPLOTLIB_LOCK, integer_epochs

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    import torch

    from napari_ssl.results import ResultsLayout

NOT_METRICS = frozenset({"epoch", "train_loss", "val_loss", "lr", "seconds"})


def _locked(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` holding the process-wide matplotlib lock."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with MATPLOTLIB_LOCK:
            return function(*args, **kwargs)

    return wrapper


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from napari_ssl.results import atomic_write

    FigureCanvasAgg(fig)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _curve_figure(
    history: Sequence[Mapping[str, float]], keys: Sequence[str], title: str, ylabel: str
) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for key in keys:
        points = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(history) if key in r]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    integer_epochs(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@_locked
def write_charts(history: Sequence[Mapping[str, float]], layout: ResultsLayout) -> list[Path]:
    """One PNG for the loss (train and val per epoch) and one per metric in ``history``
    (every key but epoch, losses, lr and seconds, e.g. ``val_psnr``). Returns the paths."""
    if not history:
        return []
    paths = [
        _save(
            _curve_figure(history, ("train_loss", "val_loss"), f"{layout.tag}: loss", "loss"),
            layout.loss_chart,
        )
    ]
    metrics = sorted({k for r in history for k in r} - NOT_METRICS)
    for metric in metrics:
        fig = _curve_figure(history, (metric,), f"{layout.tag}: {metric}", metric)
        paths.append(_save(fig, layout.metric_chart(metric)))
    return paths


def _shape_text(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return "×".join(str(s) for s in value.shape) or "scalar"
    if isinstance(value, (tuple, list)):
        return ", ".join(_shape_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_shape_text(v)}" for k, v in value.items())
    return type(value).__name__


def _plot_modules(model: torch.nn.Module, max_rows: int) -> list[tuple[str, torch.nn.Module]]:
    """Modules to list: the deepest nesting level that fits in ``max_rows`` rows (leaves above
    that level included), so a deep ViT collapses to its blocks while a U-Net shows its layers."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if not named:
        return [("(model)", model)]
    depth = {n: n.count(".") + 1 for n, _ in named}
    deepest = max(depth.values())
    for level in range(deepest, 0, -1):
        chosen = [
            (n, m)
            for n, m in named
            if depth[n] == level or (depth[n] < level and not any(m.children()))
        ]
        if len(chosen) <= max_rows or level == 1:
            return chosen
    raise AssertionError("unreachable")


def _trace(
    model: torch.nn.Module, example_args: tuple, max_rows: int
) -> list[tuple[str, str, str, int]]:
    """Run one forward pass and record (name, type, output shape, parameters) per call."""
    import torch

    rows: list[tuple[str, str, str, int]] = []

    def hook(name: str) -> Any:
        def record(module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            params = sum(p.numel() for p in module.parameters())
            rows.append((name, type(module).__name__, _shape_text(output), params))

        return record

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in example_args)
    handles = [m.register_forward_hook(hook(n)) for n, m in _plot_modules(model, max_rows)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


@_locked
def write_model_plot(
    model: torch.nn.Module,
    example_args: torch.Tensor | tuple,
    path: str | os.PathLike,
    max_rows: int = 80,
) -> Path:
    """A PNG table of the network: every layer in call order with its type, output shape and
    parameter count, from one forward pass of ``example_args`` (a tensor, or a tuple such as the
    MAE's ``(x, mask)``). Deep models are summarised at the nesting level that fits ``max_rows``."""
    from matplotlib.figure import Figure

    args = example_args if isinstance(example_args, tuple) else (example_args,)
    rows = _trace(model, args, max_rows)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    line = 0.22  # inches per row
    fig = Figure(figsize=(11.0, line * (len(rows) + 5)), dpi=110)
    ax = fig.add_axes((0.02, 0.0, 0.96, 1.0))
    ax.set_axis_off()
    n = len(rows) + 4
    ax.set_xlim(0, 1)
    ax.set_ylim(n, 0)
    inputs = ", ".join(_shape_text(a) for a in args)
    ax.text(0, 0.8, f"{type(model).__name__}", fontsize=13, weight="bold", va="center")
    summary = f"input {inputs}   ·   {total:,} parameters ({trainable:,} trainable)"
    ax.text(0, 1.9, summary, fontsize=9.5, va="center")
    columns = (
        (0.0, "#", "left"),
        (0.05, "layer", "left"),
        (0.45, "type", "left"),
        (0.67, "output shape", "left"),
        (1.0, "parameters", "right"),
    )
    style = {"family": "monospace", "fontsize": 8.5, "va": "center"}
    for x, title, ha in columns:
        ax.text(x, 3.2, title, ha=ha, weight="bold", **style)
    ax.axhline(3.7, color="0.3", linewidth=0.8)
    for i, (name, kind, shape, params) in enumerate(rows):
        y = i + 4.3
        if i % 2 == 0:
            ax.axhspan(y - 0.5, y + 0.5, color="0.94", zorder=0)
        count = f"{params:,}" if params else "-"
        cells = (str(i + 1), _clip(name, 44), _clip(kind, 24), _clip(shape, 34), count)
        for (x, _, ha), text in zip(columns, cells, strict=True):
            ax.text(x, y, text, ha=ha, **style)
    return _save(fig, Path(path))
