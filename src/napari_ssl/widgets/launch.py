"""``napari-ssl gui``: a napari window with every napari-ssl dock and a sample loaded."""

from __future__ import annotations

from typing import Any

DOCKS = (
    ("Data and pretext", "napari_ssl.widgets.data_dock", "DataDock"),
    ("Train", "napari_ssl.widgets.train_dock", "TrainDock"),
    ("Reconstruct", "napari_ssl.widgets.reconstruct_dock", "ReconstructDock"),
    ("Export", "napari_ssl.widgets.export_dock", "ExportDock"),
)
SAMPLES = {"sem": "sem_sample", "nuclei": "nuclei_sample"}


def add_docks(viewer: Any) -> dict[str, Any]:
    """Add the four docks, tabbed on the right; returns them by title."""
    import importlib

    from qtpy.QtCore import QCoreApplication

    from napari_ssl.widgets._tabs import TABBED

    docks, frames = {}, []
    for title, module, cls in DOCKS:
        widget = getattr(importlib.import_module(module), cls)(viewer)
        frames.append(
            viewer.window.add_dock_widget(widget, name=title, area="right", tabify=bool(docks))
        )
        docks[title] = widget
    for widget in docks.values():
        widget.setProperty(TABBED, True)  # in this order: left as they are
    QCoreApplication.sendPostedEvents()  # Qt lays the tabs out (the last added is in front),
    frames[0].raise_()  # then the first is brought to the front: a caller may raise another
    return docks


def add_sample(viewer: Any, sample: str) -> None:
    """Add a bundled sample (``sem`` or ``nuclei``) as a layer."""
    from napari_ssl import _sample_data

    if sample not in SAMPLES:
        raise ValueError(f"unknown sample '{sample}': choose one of {', '.join(SAMPLES)}")
    for data, kwargs, _ in getattr(_sample_data, SAMPLES[sample])():
        viewer.add_image(data, **kwargs)


def open_gui(sample: str | None = "sem") -> None:
    """Open napari with all docks (and ``sample`` loaded, unless None); runs the event loop."""
    import napari

    viewer = napari.Viewer(title="napari-ssl")
    add_docks(viewer)
    if sample:
        add_sample(viewer, sample)
    napari.run()
