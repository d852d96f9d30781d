"""A spin box for values across orders of magnitude (learning rates): typed and shown as ``%.12g``
(``0.0001``, ``5e-07``), the arrows halve or double the value."""

from __future__ import annotations

from typing import Any

from qtpy.QtGui import QValidator
from qtpy.QtWidgets import QDoubleSpinBox

DECIMALS = 15  # the spin box rounds values to this many decimals


class SciSpinBox(QDoubleSpinBox):
    """A :class:`QDoubleSpinBox` that reads and writes scientific notation."""

    def __init__(self, minimum: float, maximum: float, value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.setDecimals(DECIMALS)
        self.setRange(minimum, maximum)
        self.setValue(value)

    def textFromValue(self, value: float) -> str:
        return f"{value:.12g}"  # short for round values, exact enough for any other

    def valueFromText(self, text: str) -> float:
        return float(text)

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        try:
            value = float(text)
        except ValueError:  # "", "1e-", "." while typing
            return QValidator.State.Intermediate, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:
        self.setValue(self.value() * 2.0**steps)
