"""The docks fit a laptop screen: no dock asks for more than :data:`MAX_DOCK_PX` (with every
section open), and narrow rows wrap instead of widening the dock or being cut off."""

from __future__ import annotations

import pytest
from gui_helpers import SCREENSHOTS
from qtpy.QtWidgets import QApplication, QFormLayout, QSpinBox, QWidget

pytestmark = pytest.mark.gui

MAX_DOCK_PX = 380  # a 1366 px laptop screen keeps ~700 px for the canvas and the layer list


def _grab(widget: QWidget, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(SCREENSHOTS / f"{name}.png"))


def _needs(dock) -> int:
    """The width the dock's fields need (its scroll area's, with the scroll bar)."""
    from napari_ssl.widgets._scroll import VerticalScroll

    area = dock.findChild(VerticalScroll)
    area.updateGeometry()
    return area.minimumSizeHint().width()


def _open_sections(docks) -> None:
    data, train = docks["Data and pretext"], docks["Train"]
    data.normalization.section.expand(animate=False)
    data.normalization.clip.setChecked(True)
    train.schedule.section.expand(animate=False)


def test_the_docks_fit_a_laptop_screen(qtbot, viewer, docks, sem_layer):
    _open_sections(docks)
    for title, dock in docks.items():
        viewer.window._wrapped_dock_widgets[title].raise_()
        QApplication.processEvents()
        _grab(dock, f"dock_width_{title.split()[0]}")
    needs = {title: _needs(dock) for title, dock in docks.items()}
    assert all(width <= MAX_DOCK_PX + 10 for width in needs.values()), needs  # fonts vary a little
    train = docks["Train"]
    assert train.validation.minimumSizeHint().width() <= 210  # a spin box, two lines of words
    assert train.schedule.minimumSizeHint().width() <= 220


def _alone(qtbot, box: QWidget) -> QWidget:
    """``box`` as a field across a form, as in the Train dock."""
    window = QWidget()
    form = QFormLayout(window)
    form.addRow(box)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def _resize(window: QWidget, width: int) -> None:
    window.resize(width, 500)
    for _ in range(5):
        QApplication.processEvents()


def test_a_narrow_schedule_section_wraps_its_rows_and_grows(qtbot):
    """Too narrow for a label and its field side by side: the field goes under the label, and
    the open section is as tall as the wrapped rows (nothing cut off at its bottom)."""
    import dataclasses

    from napari_ssl.widgets.schedule_box import ScheduleBox
    from napari_ssl.widgets.sci_spinbox import SciSpinBox
    from napari_ssl.widgets.state import SslState

    state = SslState()
    train = dataclasses.replace(state.cfg.train, lr_schedule="reduceonplateau", min_lr=1e-6,
                                plateau_patience=5)  # fmt: skip
    state.update_cfg(train=train)
    box = ScheduleBox(state, SciSpinBox(1e-9, 1.0, 1e-4), QSpinBox(maximum=1000, value=100))
    window = _alone(qtbot, box)
    box.section.expand(animate=False)
    assert window.minimumSizeHint().width() <= 230
    fields = box.form.parentWidget()
    for width in (500, 230):
        _resize(window, width)
        label = box.form.labelForField(box.kind)
        wrapped = box.kind.y() >= label.geometry().bottom()
        assert wrapped == (width == 230)
        assert fields.height() >= box.form.totalHeightForWidth(fields.width())
        assert box.section.content().height() >= fields.geometry().bottom()
        _grab(window, f"schedule_box_{width}")


def test_a_narrow_validation_row_goes_under_its_button(qtbot):
    """Side by side when there is room (the words after the fraction on one or two lines);
    narrower, the fraction and its words go under "hold out", never on three lines."""
    from napari_ssl.widgets.state import SslState
    from napari_ssl.widgets.validation_box import ValidationBox, _TwoLines

    box = ValidationBox(SslState())
    window = _alone(qtbot, box)
    words = box.findChild(_TwoLines)
    one_line = words.heightForWidth(10_000)
    for width, under in ((420, False), (300, False), (200, True)):
        _resize(window, width)
        assert (box.fraction.y() >= box.use_fraction.geometry().bottom()) == under, width
        assert words.height() <= 2 * one_line, width
        assert box.folder.isVisible() and box.browse.geometry().right() <= box.width()
        _grab(window, f"validation_box_{width}")


def test_a_hint_that_wraps_to_more_lines_is_not_cut(qtbot, viewer, docks):
    """A narrow Data dock: the 'detected' line of a second layer takes three lines where the
    first took two; the label grows to show them all."""
    import numpy as np
    from qtpy.QtCore import Qt

    viewer.add_image(np.zeros((96, 96), np.uint8), name="small")
    viewer.add_image(np.zeros((2048, 2700), np.uint8), name="big")
    frame = viewer.window._wrapped_dock_widgets["Data and pretext"]
    viewer.window._qt_window.resizeDocks([frame], [300], Qt.Orientation.Horizontal)
    data, label = docks["Data and pretext"], docks["Data and pretext"].axes.detected
    qtbot.waitUntil(lambda: frame.width() <= frame.minimumSizeHint().width() + 5, timeout=5000)
    data.select(["small"])
    qtbot.wait(300)
    data.select(["big"])
    qtbot.wait(300)  # laid out again (a cut label stays cut: it is not asked again)
    lines = label.heightForWidth(label.width())
    assert lines > label.fontMetrics().lineSpacing() * 2  # three lines...
    assert label.height() >= lines  # ... all shown
