"""What the GUI thread was doing during each long gap of ``gui_latency.py --why``.

napari's own performance monitor (``NAPARI_PERFMON``) times every Qt event the GUI thread handles
(nested: a window's repaint holds the canvas's paint) and the callables named in its config. Its
events are collected in memory while a phase is measured; each gap between two ticks of the stall
meter longer than :data:`LONG_MS` is then explained by the outermost Qt event that covered most of
it, and by the longest traced call inside it (napari-ssl's slots, napari's ``add_image``, vispy's
canvas paint). Set up with :func:`enable` before napari is imported.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

LONG_MS = 50.0
TRACED = [  # callables timed inside the Qt events ("module.Class.method")
    "vispy.app.backends._qt.CanvasBackendDesktop.paintGL",
    "napari.components.viewer_model.ViewerModel.add_image",
    "napari.layers.base.base.Layer._update_dims",  # a layer's new data (its refresh)
    "napari_ssl.widgets.train_dock.TrainDock._on_event",
    "napari_ssl.widgets.train_dock.TrainDock._apply",
    "napari_ssl.widgets.loss_plot.LossPlot.tick",
    "napari_ssl.widgets.reconstruct_dock.ReconstructDock._on_progress",
    "napari_ssl.widgets.reconstruct_dock.ReconstructDock._on_result",
    "napari_ssl.widgets.gui_collection._Collection.tick",
]


@dataclass(frozen=True)
class Span:
    name: str
    start: float  # s, time.perf_counter's clock
    end: float
    qt_event: bool

    def overlap(self, start: float, end: float) -> float:
        return max(0.0, min(self.end, end) - max(self.start, start))


def enable() -> None:
    """Ask napari for its performance monitor (Qt events and :data:`TRACED`); call before
    napari is imported."""
    config = {"trace_qt_events": True, "trace_callables": ["why"],
              "callable_lists": {"why": TRACED}}  # fmt: skip
    fd, path = tempfile.mkstemp(prefix="napari-perfmon-", suffix=".json")
    with os.fdopen(fd, "w") as file:
        json.dump(config, file)
    os.environ["NAPARI_PERFMON"] = path


class Recorder:
    """The monitor's events, kept while :attr:`on` (napari keeps only running statistics)."""

    def __init__(self, viewer: Any) -> None:
        from napari.utils import perf

        self.on = False
        self.spans: list[Span] = []
        add_event = perf.timers.add_event

        def add(event: Any) -> None:
            if self.on and event.phase == "X":
                span = event.span
                qt = event.category == "qt_event"
                self.spans.append(Span(event.name, span.start_ns / 1e9, span.end_ns / 1e9, qt))
            add_event(event)

        perf.timers.add_event = add
        performance = viewer.window._qt_viewer.dockPerformance  # its own 250 ms repaints: off
        performance.widget().timer.stop()
        performance.hide()

    def take(self) -> list[Span]:
        spans, self.spans = self.spans, []
        return spans


PARTS = ("compose", "canvas", "widgets", "napari layers", "napari-ssl", "other Qt", "no event")
PARTS_SAID = {  # what each share of a gap is (in the report)
    "compose": "the window's repaint less its paints (Qt composing the GL window)",
    "canvas": "vispy's paint of the canvas",
    "widgets": "Qt painting widgets",
    "napari layers": "napari adding a layer or taking a layer's new data",
    "napari-ssl": "napari-ssl's slots, napari layers left out",
    "other Qt": "other event handlers (napari's, Qt's)",
    "no event": "no event handled: the GUI thread waiting (interpreter lock, scheduler)",
}


def explain(ticks: list[float], spans: list[Span]) -> list[dict[str, Any]]:
    """Each gap over :data:`LONG_MS`, split into :data:`PARTS` (ms) by the events and traced
    calls that overlap it; ``cause`` is the largest part."""
    outer = _outermost([s for s in spans if s.qt_event])
    rows = []
    for start, end in itertools.pairwise(ticks):
        gap = end - start
        if gap * 1000.0 <= LONG_MS:
            continue
        parts = dict.fromkeys(PARTS, 0.0)
        for event in (o for o in outer if o.overlap(start, end) > 0):
            within = [s for s in spans if event.start <= s.start and s.end <= event.end]
            share = event.overlap(start, end) / (event.end - event.start or 1.0)
            _split(event, within, parts, share)
        parts["no event"] = gap - sum(parts.values())
        row = {"gap_ms": round(gap * 1000.0, 1)}
        row.update({k: round(v * 1000.0, 1) for k, v in parts.items()})
        row["cause"] = max(PARTS, key=parts.__getitem__)
        rows.append(row)
    return rows


def _split(event: Span, within: list[Span], parts: dict[str, float], share: float) -> None:
    """Add ``share`` of the outer Qt ``event``'s time to ``parts``, by what ran inside it."""
    length = event.end - event.start
    canvas = _total(s for s in within if s.name.endswith("paintGL"))
    if event.name.startswith("UpdateRequest"):
        paints = (s for s in within if s.qt_event and s.name.startswith("Paint:") and s != event)
        widgets = _total(paints) - canvas  # the canvas's paint event holds its paintGL
        found = {"canvas": canvas, "widgets": widgets, "compose": length - canvas - widgets}
    else:
        layers = _total(s for s in within if s.name.endswith(LAYER_CALLS))
        ours = _outermost([s for s in within if s.name.split(".")[0] in SLOT_CLASSES])
        in_ours = (s for s in within if s.name.endswith(LAYER_CALLS) and _in(s, ours))
        found = {"napari layers": layers, "napari-ssl": _total(ours) - _total(in_ours)}
        found["other Qt"] = length - sum(found.values())
    for key, seconds in found.items():
        parts[key] += max(seconds, 0.0) * share


def _total(spans: Any) -> float:
    """The time covered by ``spans`` (nested ones counted once)."""
    return sum(s.end - s.start for s in _outermost(list(spans)))


def _in(span: Span, spans: list[Span]) -> bool:
    return any(o.start <= span.start and span.end <= o.end for o in spans)


LAYER_CALLS = ("add_image", "_update_dims")
SLOT_CLASSES = {name.split(".")[-2] for name in TRACED if name.startswith("napari_ssl")}


def _outermost(spans: list[Span]) -> list[Span]:
    """The spans not nested in another (Qt events nest: a repaint sends paint events)."""
    outer: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if not outer or span.start >= outer[-1].end:
            outer.append(span)
    return outer


def report(phase: str, rows: list[dict[str, Any]]) -> None:
    """A markdown table of the long gaps, what filled them, and a count by cause."""
    print(f"\n| {phase}: gap > {LONG_MS:.0f} ms | " + " | ".join(PARTS) + " | cause |")
    print("|---" * (len(PARTS) + 2) + "|")
    for r in rows:
        print(f"| {r['gap_ms']} | " + " | ".join(str(r[k]) for k in PARTS) + f" | {r['cause']} |")
    print(f"\n{phase}: long gaps by cause: {dict(Counter(r['cause'] for r in rows))}")
    print("; ".join(f"{k}: {v}" for k, v in PARTS_SAID.items()))
