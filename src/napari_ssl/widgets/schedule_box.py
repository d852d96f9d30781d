"""The Train dock's learning-rate schedule: a collapsible section titled with the schedule used.

BiaPy 3.7.1's TRAIN.LR_SCHEDULER: the schedule's name, and only the fields that schedule uses.
Each edit goes to the shared config as typed, one field at a time (the others keep their exact
values, also those a loaded config gave). A bad combination (a plateau patience not under the
early-stopping patience, a warm-up that ends after the decay starts, ...) shows under the section,
also when it is collapsed, and Start refuses it (:meth:`ScheduleBox.check`). Choosing a schedule
that needs a minimum lr, a warm-up or a plateau patience fills them in when the config has none,
so a choice never starts invalid (by BiaPy's rules too). The dock's epochs and learning rate are
read from its fields: they reach the config only at Start. In a narrow dock a row too wide for it
puts its field under its label, and the section grows to the wrapped rows' height.
"""

from __future__ import annotations

import contextlib
import dataclasses
from functools import partial
from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtGui import QIcon
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_ssl.config import Config, ConfigError, TrainConfig
from napari_ssl.validation import check_lr_schedule
from napari_ssl.widgets._hint import hint_label, set_hint
from napari_ssl.widgets._links import link
from napari_ssl.widgets.sci_spinbox import SciSpinBox
from napari_ssl.widgets.state import SslState
from napari_ssl.widgets.wording import in_dock_words

SCHEDULES = {  # BiaPy's TRAIN.LR_SCHEDULER.NAME -> the combo's words
    "": "constant",
    "warmupcosine": "warm-up + cosine decay",
    "reduceonplateau": "reduce on plateau",
    "onecycle": "one cycle",
    "warmupreduceonplateau": "warm-up + step halving",
}
NOTES = {  # what each schedule does, under its fields
    "": "The learning rate stays as set.",
    "warmupcosine": "A linear warm-up from 0 to the learning rate, held, then a half cosine down "
    "to the minimum lr.",
    "reduceonplateau": "The learning rate is multiplied by the factor after plateau patience + 1 "
    "epochs in a row without a better validation loss (without validation images: the training "
    "loss): with a patience of 3, at the 4th such epoch.",
    "onecycle": "Up from a low value to the learning rate, then down to near 0 by the last "
    "epoch (torch OneCycleLR).",
    "warmupreduceonplateau": "10 epochs of linear warm-up to the learning rate, then the "
    "learning rate; a run of more than 100 epochs halves it 10 times over its last 50 (more "
    "than 300: the last 100).",
}
FIELDS = {  # config field -> (row label, the schedules that use it); labels as in wording.FIELDS
    "min_lr": ("Minimum lr", ("warmupcosine", "reduceonplateau")),
    "warmup_epochs": ("Warm-up epochs", ("warmupcosine",)),
    "cosine_decay_fraction": ("Decay fraction", ("warmupcosine",)),
    "plateau_factor": ("Plateau factor", ("reduceonplateau",)),
    "plateau_patience": ("Plateau patience", ("reduceonplateau",)),
}
PLATEAU_PATIENCE = 10  # filled in for reduceonplateau (below the early-stopping patience)
WARMUP_EPOCHS = 5  # filled in for warmupcosine: at most a tenth of the epochs


class ScheduleBox(QWidget):
    """The schedule and its fields, written to ``state`` as typed and checked on every change;
    ``lr`` and ``epochs`` are the dock's fields for them."""

    def __init__(self, state: SslState, lr: QDoubleSpinBox, epochs: QSpinBox) -> None:
        super().__init__()
        self.state, self._lr, self._epochs = state, lr, epochs
        # as the normalisation section: arrows in the title, a long title cut (tooltip: all)
        self.section = QCollapsible("", expandedIcon=QIcon(), collapsedIcon=QIcon())
        self.section.layout().setContentsMargins(0, 0, 0, 0)
        self.section.content().layout().setContentsMargins(0, 0, 0, 0)  # fields under the dock's
        self.section.setFrameShape(QFrame.Shape.NoFrame)
        title = self.section.toggleButton()
        title.setStyleSheet("text-align: left; border: none; background: transparent;")
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.summary = ""  # the title without its arrow
        self._shown: tuple[Any, ...] | None = None  # the config values the fields show
        body = _Fields()
        self.form = QFormLayout(body)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # a narrow dock
        self.kind = QComboBox()
        for index, (name, words) in enumerate(SCHEDULES.items()):
            self.kind.addItem(words, name)
            tip = f"{NOTES[name]} (BiaPy TRAIN.LR_SCHEDULER.NAME: {name or 'none'})"
            self.kind.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        self.min_lr = SciSpinBox(0.0, 1.0, 1e-6)
        self.warmup_epochs = QSpinBox(minimum=0, maximum=100000, specialValueText="none")
        self.cosine_decay_fraction = QDoubleSpinBox(
            decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, specialValueText="after warm-up"
        )
        self.plateau_factor = QDoubleSpinBox(decimals=2, minimum=0.01, maximum=0.99, singleStep=0.1)
        self.plateau_patience = QSpinBox(minimum=0, maximum=100000, suffix=" epochs")
        self.fields = {name: getattr(self, name) for name in FIELDS}
        self.note = hint_label()  # under the section: it sizes its rows without wrapping
        self.form.addRow("Schedule", self.kind)
        for name, (label, _) in FIELDS.items():
            field = self.fields[name]
            field.setKeyboardTracking(False)  # typed values count on Enter or leaving the field
            field.valueChanged.connect(partial(self._edited, name))
            self.form.addRow(label, field)
        self.section.addWidget(body)
        body.installEventFilter(self)  # after the section's filter: called before it
        self.message = hint_label()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.section, self.note, self.message):
            layout.addWidget(widget)
        self.section.toggled.connect(self._update_title)
        self.kind.currentIndexChanged.connect(self._chosen)
        for field in (epochs, lr):  # the warm-up ends before the decay; min lr <= lr
            field.valueChanged.connect(self._recheck)
        self._show(state.cfg)
        link(self, (state.events.cfg, self._show))

    def showEvent(self, event: Any) -> None:
        """Line the fields up with the dock's: one label width in both forms (fonts are final
        once shown, napari's theme applied)."""
        super().showEvent(event)
        outer = self.parentWidget().layout() if self.parentWidget() else None
        labels = [_label(form, row) for form in (outer, self.form)
                  if isinstance(form, QFormLayout) for row in range(form.rowCount())]  # fmt: skip
        labels = [label for label in labels if label is not None]
        width = max(label.sizeHint().width() for label in labels)
        for label in labels:
            label.setMinimumWidth(width)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The fields resized: the section reads their height for the new width next."""
        if event.type() == QEvent.Type.Resize and isinstance(watched, QWidget):
            watched.updateGeometry()  # its size hint, cached by the section's layout
        return False

    def commit(self) -> None:
        """Take the values typed but not yet confirmed with Enter."""
        for field in self.fields.values():
            field.interpretText()

    def check(self, cfg: Config) -> None:
        """Raise :class:`ConfigError` when ``cfg``'s schedule is bad (shown under the section)."""
        try:
            check_lr_schedule(cfg)
        except ConfigError as err:
            set_hint(self.message, in_dock_words(str(err)), error=True)
            raise ConfigError(f"Learning-rate schedule: {err}") from None
        set_hint(self.message, "")

    def _recheck(self) -> None:
        """Check the shared config with the dock's epochs and learning rate."""
        train = dataclasses.replace(
            self.state.cfg.train, epochs=self._epochs.value(), lr=float(self._lr.value())
        )
        with contextlib.suppress(ConfigError):  # shown under the section; Start refuses it
            self.check(dataclasses.replace(self.state.cfg, train=train))

    def _edited(self, name: str, value: float) -> None:
        train = self.state.cfg.train
        value = int(value) if isinstance(getattr(self, name), QSpinBox) else float(value)
        if getattr(train, name) != value:
            self.state.update_cfg(train=dataclasses.replace(train, **{name: value}))

    def _chosen(self) -> None:
        """Use the chosen schedule; fill in what it needs and the config does not give."""
        kind, train = self.kind.currentData(), self.state.cfg.train
        changes: dict[str, Any] = {"lr_schedule": kind}
        if kind in FIELDS["min_lr"][1] and train.min_lr < 0:
            changes["min_lr"] = float(f"{self._lr.value() / 100:.3g}")
        if kind == "warmupcosine" and train.warmup_epochs < 0 and train.cosine_decay_fraction <= 0:
            changes["warmup_epochs"] = min(WARMUP_EPOCHS, self._epochs.value() // 10)
        if kind == "reduceonplateau" and train.plateau_patience < 0:
            patience = train.patience
            changes["plateau_patience"] = (
                min(PLATEAU_PATIENCE, patience - 1) if patience > 0 else PLATEAU_PATIENCE
            )
        self.state.update_cfg(train=dataclasses.replace(train, **changes))

    def _show(self, cfg: Config) -> None:
        """Show the config's schedule when it changed (a choice, a loaded config); check it."""
        values = _values(cfg.train)
        if values != self._shown:
            self._shown = values
            train = cfg.train
            widgets = (self.kind, *self.fields.values())
            for widget in widgets:
                widget.blockSignals(True)
            self.kind.setCurrentIndex(max(0, self.kind.findData(train.lr_schedule)))
            for name, field in self.fields.items():  # "not given" (-1): the field's minimum
                field.setValue(max(getattr(train, name), field.minimum()))
            for widget in widgets:
                widget.blockSignals(False)
            for name, (_, schedules) in FIELDS.items():
                used = train.lr_schedule in schedules
                self.fields[name].setVisible(used)
                self.form.labelForField(self.fields[name]).setVisible(used)
            self._update_title()
        self._recheck()

    def _update_title(self) -> None:
        kind = self.state.cfg.train.lr_schedule
        self.summary = f"Learning-rate schedule: {SCHEDULES.get(kind, kind)}"
        self.section.setText(f"{'▼' if self.section.isExpanded() else '▶'} {self.summary}")
        set_hint(self.note, NOTES.get(kind, "") if self.section.isExpanded() else "")
        self.section.toggleButton().setToolTip(f"{self.summary}. {NOTES.get(kind, '')}")


class _Fields(QWidget):
    """The section's fields: their size hint is as tall as their rows at the current width
    (wrapped or not), which the section takes as its height."""

    def hasHeightForWidth(self) -> bool:
        return False  # the section would ask the height at the hint's width, not the current one

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        height = self.layout().totalHeightForWidth(self.width())
        return QSize(hint.width(), max(hint.height(), height))


def _label(form: QFormLayout, row: int) -> QLabel | None:
    item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
    return item.widget() if item is not None and isinstance(item.widget(), QLabel) else None


def _values(train: TrainConfig) -> tuple[Any, ...]:
    return train.lr_schedule, *(getattr(train, name) for name in FIELDS)
