"""The Data dock's "Pretext task" group: the task, its own parameters (a page per task, only the
task's shown) and the patch size. The pages' fields start where the group's own do: one label
column, and the pages in a plain widget (a QStackedWidget's frame shifted them by its width)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSize
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

DEFAULT_XY = {2: 256, 3: 128}  # patch side (Y, X) by dimensionality: 2D 256², 3D 64 x 128²
GRID_RATIO = 0.5  # a checkerboard hides half the tokens
RANDOM_RATIO = 0.75  # MAE's mask ratio, the first one offered for random masks


def _spin(lo: float, hi: float, value: float, step: float, decimals: int = 0) -> Any:
    box = QDoubleSpinBox() if decimals else QSpinBox()
    if decimals:
        box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


class _FormLabel(QLabel):
    """A form label as wide as the widest of its ``group``: a form nested in another (a page of
    the stack) starts its fields where the outer one does, whatever the font."""

    def __init__(self, text: str, group: list[QLabel]) -> None:
        super().__init__(text)
        self._group = group
        group.append(self)

    def _widest(self, hint: QSize) -> QSize:
        return QSize(max(QLabel.sizeHint(label).width() for label in self._group), hint.height())

    def sizeHint(self) -> QSize:
        return self._widest(super().sizeHint())

    def minimumSizeHint(self) -> QSize:
        return self._widest(super().minimumSizeHint())


class PretextBox(QGroupBox):
    """Task (crappify / masking), its parameters, and the patch size (Y, X) and (Z)."""

    def __init__(self) -> None:
        super().__init__("Pretext task")
        form = QFormLayout(self)
        labels: list[QLabel] = []  # the group's and the pages': one label column

        def row(on: QFormLayout, label: str, field: QWidget) -> None:
            on.addRow(_FormLabel(label, labels), field)

        self.task = QComboBox()
        self.task.addItems(["crappify", "masking"])
        row(form, "Task", self.task)
        crap, mask = QWidget(), QWidget()
        crap_form, mask_form = QFormLayout(crap), QFormLayout(mask)
        self.noise = _spin(0.0, 1.0, 0.2, 0.05, decimals=3)
        self.noise.setToolTip(
            "Gaussian noise std as a fraction of the image maximum (the upper clipping bound "
            "when Normalisation clips percentiles)"
        )
        self.factor = _spin(1.0, 64.0, 4.0, 1.0, decimals=2)
        self.factor.setToolTip("Area down-sampling factor: 4 = half size per axis, then back up")
        row(crap_form, "Noise", self.noise)
        row(crap_form, "Resizing factor", self.factor)
        self.mask_type = QComboBox()
        self.mask_type.addItems(["grid", "random"])
        self.ratio = _spin(0.05, 0.95, 0.5, 0.05, decimals=2)
        self.token = _spin(2, 64, 16, 2)
        row(mask_form, "Mask type", self.mask_type)
        row(mask_form, "Mask ratio", self.ratio)
        row(mask_form, "Token size", self.token)
        self.pages = (crap, mask)  # in the order of the tasks
        holder = QWidget()
        column = QVBoxLayout(holder)
        for layout in (column, crap_form, mask_form):
            layout.setContentsMargins(0, 0, 0, 0)
        for page in self.pages:
            column.addWidget(page)
        self.show_page(0)
        form.addRow(holder)
        self.patch_xy = _spin(8, 4096, DEFAULT_XY[2], 16)
        self.patch_z = _spin(1, 1024, 64, 8)
        row(form, "Patch size (Y, X)", self.patch_xy)
        row(form, "Patch size (Z)", self.patch_z)
        self.task.currentIndexChanged.connect(self.show_page)

    def show_page(self, index: int) -> None:
        """Show one task's parameters (the other page, hidden, takes no room)."""
        for i, page in enumerate(self.pages):
            page.setVisible(i == index)
