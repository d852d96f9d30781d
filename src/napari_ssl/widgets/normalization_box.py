"""The Data dock's normalisation settings: a collapsible section titled with what is used.

The type (BiaPy DATA.NORMALIZATION.TYPE), percentile clipping first (PERC_CLIP) and, for zero mean
and unit variance only, a fixed mean and/or std in raw units (ZERO_MEAN_UNIT_VAR.MEAN_VAL /
STD_VAL: one value for every channel, or one per channel; empty: each image's own). An edit
reaches the shared config only when the config's own validation accepts it; otherwise the
message shows under the section (also when it is collapsed), the config keeps its last valid
values, and Start refuses to train until it is fixed (:func:`commit_inputs`). The lower clipping
percentile stays below the upper one (each field bounds the other). The previews are not
affected: they show the pretext's input in raw units.
"""

from __future__ import annotations

import dataclasses
import weakref
from functools import partial
from typing import Any

from qtpy.QtGui import QIcon
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_ssl.config import Config, ConfigError, DataConfig
from napari_ssl.data.images import DataError
from napari_ssl.validation import check_normalization
from napari_ssl.widgets import _layers
from napari_ssl.widgets._hint import hint_label, set_hint
from napari_ssl.widgets._links import link, when_removed
from napari_ssl.widgets.state import SslState
from napari_ssl.widgets.wording import in_dock_words

KINDS = {
    "zero_mean_unit_variance": "zero mean, unit variance",
    "scale_range": "min–max to [0, 1]",
    "div": "divide by 255 or 65535",
}
DEFAULT_CLIP = (0.1, 99.9)
CLIP_GAP = 0.01  # the least the upper percentile is above the lower one (the fields' decimals)
_BOXES: weakref.WeakSet[NormalizationBox] = weakref.WeakSet()


def _forget(box: NormalizationBox, wait: bool) -> None:
    _BOXES.discard(box)


def commit_inputs(state: SslState) -> list[str]:
    """Commit the normalisation fields of ``state``'s docks; the errors of those that are bad."""
    return [error for box in list(_BOXES) if box.state is state and (error := box.commit())]


def parse_values(text: str, field: str) -> tuple[float, ...] | None:
    """``'120, 85'`` -> ``(120.0, 85.0)``; empty -> None (each image's own)."""
    if not text.strip():
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{field}: '{text.strip()}' is not a list of numbers; give one value for every "
            "channel, or one per channel, separated by commas (e.g. 120 or 120, 85)."
        ) from None


def format_values(values: tuple[float, ...] | None) -> str:
    """The text :func:`parse_values` reads back exactly."""
    return ", ".join(f"{v:g}" if float(f"{v:g}") == v else repr(v) for v in values or ())


def _spin(value: float) -> QDoubleSpinBox:
    """A percentile (no "%": its value shows whole in the narrowest field)."""
    return QDoubleSpinBox(decimals=2, minimum=0.0, maximum=100.0, singleStep=0.1, value=value)


class NormalizationBox(QWidget):
    """Normalisation type, percentile clipping and fixed mean / std, checked on every edit."""

    def __init__(self, viewer: Any, state: SslState, dock: QWidget | None = None) -> None:
        """``dock``: the dock it is part of; once that is closed, the box neither follows the
        state nor is committed at Start (a closed dock lives on until it is collected)."""
        super().__init__()
        self.viewer, self.state = viewer, state
        # arrows in the title, not icons: superqt paints those before napari's theme applies
        self.section = QCollapsible("", expandedIcon=QIcon(), collapsedIcon=QIcon())
        self.section.layout().setContentsMargins(0, 0, 0, 0)  # the title lines up with the labels
        self.summary = ""  # the title without its arrow: the settings the config holds
        title = self.section.toggleButton()
        title.setStyleSheet("text-align: left; border: none; background: transparent;")
        # a long title is cut (its tooltip has it all): the dock does not widen for it
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._shown: tuple[Any, ...] | None = None  # the config values the fields show
        body = QWidget()
        form = QFormLayout(body)
        form.setContentsMargins(0, 0, 0, 0)
        self.kind = QComboBox()
        for kind, label in KINDS.items():
            self.kind.addItem(label, kind)
        self.kind.setToolTip("How each image's intensities are scaled (BiaPy DATA.NORMALIZATION)")
        self.clip = QCheckBox("to the percentiles below")  # rows narrow enough for a laptop
        self.clip.setToolTip("Clip each image to these percentiles first (PERC_CLIP)")
        self.clip_lo, self.clip_hi = _spin(DEFAULT_CLIP[0]), _spin(DEFAULT_CLIP[1])
        clip_row = QHBoxLayout()
        for widget in (self.clip_lo, QLabel("to"), self.clip_hi):
            clip_row.addWidget(widget)
        clip_row.addStretch(1)
        self.mean, self.std = QLineEdit(), QLineEdit()
        for edit, what in ((self.mean, "mean"), (self.std, "std")):
            edit.setPlaceholderText(f"each image's own {what}")
            edit.setToolTip(
                f"A fixed {what} in raw units, after clipping: one value for every channel, or "
                f"one per channel separated by commas. Empty: each image's own {what}."
            )
            edit.editingFinished.connect(self.commit)
        form.addRow("Type", self.kind)
        form.addRow("Clip", self.clip)
        form.addRow("Percentiles", clip_row)
        form.addRow("Fixed mean", self.mean)
        form.addRow("Fixed std", self.std)
        self.section.addWidget(body)
        self.message = hint_label()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.section)
        layout.addWidget(self.message)
        self.section.toggled.connect(self._update)
        self.kind.currentIndexChanged.connect(self.commit)
        self.clip.toggled.connect(self.commit)
        for box in (self.clip_lo, self.clip_hi):
            box.valueChanged.connect(self._bound_clip)
            box.valueChanged.connect(self.commit)
        self._show(state.cfg)
        events = state.events  # layers, axes or folder: the channel count to check may change
        link(dock or self, (events.cfg, self._show), *((e, self.commit) for e in (events.layers,
             events.channel_axis, events.folder)))  # fmt: skip
        _BOXES.add(self)
        when_removed(dock or self, partial(_forget, self))

    def commit(self) -> str:
        """Put valid fields into the shared config; else show why and return the message."""
        try:
            data = self._read()
        except ConfigError as err:
            set_hint(self.message, f"Not used: {in_dock_words(str(err))}", error=True)
            return f"Normalisation: {err}"
        set_hint(self.message, "")
        self._shown = _values(data)
        if data.normalization == "zero_mean_unit_variance":  # as read: "120, 85"
            self.mean.setText(format_values(data.normalization_mean))
            self.std.setText(format_values(data.normalization_std))
        if data != self.state.cfg.data:
            self.state.update_cfg(data=data)
        self._update()
        return ""

    def _bound_clip(self) -> None:
        """Each clipping percentile bounds the other: lower < upper, as the config requires."""
        self.clip_lo.setMaximum(self.clip_hi.value() - CLIP_GAP)
        self.clip_hi.setMinimum(self.clip_lo.value() + CLIP_GAP)

    def _read(self) -> DataConfig:
        """The shared data config with the fields' values, checked; :class:`ConfigError` if bad."""
        zmuv = self.kind.currentData() == "zero_mean_unit_variance"
        boxes, current = (self.clip_lo, self.clip_hi), self.state.cfg.data
        clip = tuple(box.value() for box in boxes)
        if current.percentile_clip and all(  # the config's values as the fields show them
            box.textFromValue(box.value()) == box.textFromValue(v)
            for box, v in zip(boxes, current.percentile_clip, strict=True)
        ):
            clip = tuple(current.percentile_clip)  # keep all their decimals
        data = dataclasses.replace(
            current,
            normalization=self.kind.currentData(),
            percentile_clip=clip if self.clip.isChecked() else None,
            normalization_mean=parse_values(self.mean.text(), "Fixed mean") if zmuv else None,
            normalization_std=parse_values(self.std.text(), "Fixed std") if zmuv else None,
        )
        check_normalization(data)
        layer = self._first_layer()
        if layer is not None and data.channels is None:
            name, channels = layer
            for values in (data.normalization_mean, data.normalization_std):
                if values and len(values) not in (1, channels):
                    raise ConfigError(
                        f"'{name}' has {channels} channel(s): give one value for every channel, "
                        f"or {channels}; got {format_values(values)}"
                    )
        return data

    def _first_layer(self) -> tuple[str, int] | None:
        """(name, channels) of the first selected layer (None for a folder, as yet unread)."""
        if self.state.folder:
            return None
        for name in self.state.layers:
            if name in self.viewer.layers:
                try:
                    image = _layers.to_image(
                        self.viewer.layers[name], self.state.ndim, self.state.channel_axis
                    )
                except DataError:
                    return None
                return name, image.channels
        return None

    def _show(self, cfg: Config) -> None:
        """Show the config's values when they changed elsewhere (a loaded config); fields being
        edited stay as they are while other settings change."""
        values = _values(cfg.data)
        if values == self._shown:
            return
        self._shown = values
        kind, clip, mean, std = values
        widgets = (self.kind, self.clip, self.clip_lo, self.clip_hi)
        for widget in widgets:
            widget.blockSignals(True)
        self.kind.setCurrentIndex(max(0, self.kind.findData(kind)))
        self.clip.setChecked(clip is not None)
        self.clip_lo.setMaximum(100.0)  # the config's pair, whatever the fields held
        self.clip_hi.setMinimum(0.0)
        self.clip_lo.setValue((clip or DEFAULT_CLIP)[0])
        self.clip_hi.setValue((clip or DEFAULT_CLIP)[1])
        self._bound_clip()
        for widget in widgets:
            widget.blockSignals(False)
        if kind == "zero_mean_unit_variance":  # other kinds keep what was typed (unused)
            self.mean.setText(format_values(mean))
            self.std.setText(format_values(std))
        set_hint(self.message, "")
        self._update()

    def _update(self) -> None:
        """Enable what the type uses; title the section with the config's settings."""
        kind, clip, mean, std = _values(self.state.cfg.data)
        zmuv = self.kind.currentData() == "zero_mean_unit_variance"
        self.mean.setEnabled(zmuv)
        self.std.setEnabled(zmuv)
        self.clip_lo.setEnabled(self.clip.isChecked())
        self.clip_hi.setEnabled(self.clip.isChecked())
        parts = [KINDS.get(kind, kind)]
        if clip:
            parts.append(f"clip {clip[0]:g}–{clip[1]:g} %")
        for what, values in (("mean", mean), ("std", std)):
            if values:
                parts.append(f"{what} {format_values(values)}")
        self.summary = f"Normalisation: {', '.join(parts)}"
        self.section.setText(f"{'▼' if self.section.isExpanded() else '▶'} {self.summary}")
        self.section.toggleButton().setToolTip(self.summary)


def _values(data: DataConfig) -> tuple[Any, ...]:
    clip = tuple(data.percentile_clip) if data.percentile_clip else None
    return data.normalization, clip, data.normalization_mean, data.normalization_std
