"""The Data dock's previews: what the network will see, drawn where it lies in the source.

A mixin of :class:`~napari_ssl.widgets.data_dock.DataDock` (its ``viewer``, ``state``,
``preview_hint``, ``selected_layers`` and ``_read_params``): requests go to a
:class:`~napari_ssl.widgets.preview_runner.PreviewRunner`; the hint under the button says where
cropped previews lie, or why none is drawn.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from napari.layers import Image as ImageLayer
from napari.utils.notifications import show_error

from napari_ssl.pretext.preview import check_pretext, preview_region
from napari_ssl.widgets import _layers
from napari_ssl.widgets._hint import set_hint
from napari_ssl.widgets.preview_runner import (
    PreviewJob,
    PreviewRunner,
    Region,
    inside,
    view_centre,
    where_text,
)
from napari_ssl.widgets.wording import in_dock_words
from napari_ssl.widgets.worker import plain_error

PREVIEW_MAX = {2: (2048, 2048), 3: (64, 512, 512)}  # largest previewed crop per dimensionality


class DataPreviews:
    """Preview, live updates after parameter changes, and the hint under the button."""

    viewer: Any
    state: Any
    preview_hint: Any
    selected_layers: Any
    _read_params: Any

    def _init_previews(self) -> None:
        # source layers with a preview layer to keep updated (followed through renames)
        self._previewed: weakref.WeakSet[ImageLayer] = weakref.WeakSet()
        self._runner = PreviewRunner(self, self._show_preview, self._preview_failed)
        # the latest request's previews (source, crop, image shape): the hint says where they lie
        self._where: list[tuple[weakref.ref[ImageLayer], Region, tuple[int, ...]]] = []
        self._showing_where = False  # and shows that (a renamed source is named anew)
        self._shown_error = ""  # the last preview error shown, not repeated by live updates

    def run_preview(self, live: bool = False) -> None:
        """Add or update the preview layer of every selected layer (``live``: after a parameter
        change, an error already shown is not shown again, and a kept crop that the view is
        still in is kept)."""
        self._read_params()
        layers = self.selected_layers()
        if not layers:
            hint = " (Preview shows layers: open one image of the folder)" * bool(self.state.folder)
            show_error(
                "No image layer selected: pick one or more in the 'Image layers' list"
                f"{hint}, or open a sample via File ▸ Open Sample ▸ napari-ssl."
            )
            return
        if live:  # only the layers whose previews are shown
            layers = [layer for layer in layers if layer in self._previewed]
        else:  # kept updated from now on: fixing what is refused below draws it
            self._previewed.update(layers)
        try:
            check_pretext(self.state.cfg)  # what Start would refuse is not drawn
            axes = _layers.channel_axes(layers, self.state.ndim, self.state.channel_axis)
            jobs = [self._job(lyr, axis, live) for lyr, axis in zip(layers, axes, strict=True)]
        except ValueError as err:  # DataError, ConfigError
            self._runner.submit([])  # what was asked before is not drawn either
            self._report(err, live)
            return
        self._where = []
        self._runner.submit(jobs)
        if self._runner.busy:
            names = ", ".join(f"'{job.layer.name}'" for job in jobs)
            self._say(f"Computing the preview of {names}…")

    def _job(self, layer: ImageLayer, axis: int | None, live: bool) -> PreviewJob:
        """What to preview of ``layer`` (its channels on ``axis``): a crop around the current
        view (``live``: the kept crop while the view is in it)."""
        state = self.state
        image = _layers.to_image(layer, state.ndim, axis)
        data_key = (id(_layers.layer_data(layer)), state.ndim, axis)
        centre = view_centre(self.viewer, layer, axis)
        region = self._runner.kept_region(layer, data_key)
        if not (live and region is not None and inside(region, centre)):
            region = preview_region(image.spatial_shape, PREVIEW_MAX[state.ndim], centre)
        return PreviewJob(layer, image, region, state.cfg, data_key, live)

    def _live_preview(self) -> None:
        self._previewed.intersection_update(self.selected_layers())
        if self._previewed:
            self.run_preview(live=True)

    def _preview_of(self, layer: ImageLayer) -> bool:
        """Whether ``layer`` is in the viewer with a preview layer (the user may have deleted
        either)."""
        return layer in self.viewer.layers and any(
            f"{layer.name} {suffix}" in self.viewer.layers
            for suffix in _layers.PREVIEW_SUFFIXES.values()
        )

    def _show_preview(self, job: PreviewJob, out: np.ndarray) -> None:
        """Put a computed preview in the viewer, where its crop lies in the source."""
        layer, task = job.layer, job.cfg.pretext.task
        if layer not in self.viewer.layers or (job.live and layer not in self._previewed):
            self._show_where()
            return  # removed meanwhile, or its preview deleted by the user
        for other, suffix in _layers.PREVIEW_SUFFIXES.items():  # one preview per layer
            if other != task and f"{layer.name} {suffix}" in self.viewer.layers:
                self.viewer.layers.remove(f"{layer.name} {suffix}")
        name = f"{layer.name} {_layers.PREVIEW_SUFFIXES[task]}"
        _layers.upsert_crop(self.viewer, name, out, layer, job.channel_axis, job.region)
        self._previewed.add(layer)
        self._shown_error = ""
        self._where.append((weakref.ref(layer), job.region, job.image.spatial_shape))
        self._show_where()

    def _show_where(self) -> None:
        """Once the request's previews are all done: where the cropped ones lie."""
        if self._runner.busy:
            return
        lines = [
            where_text(layer.name, region, shape, PREVIEW_MAX[len(shape)])
            for ref, region, shape in self._where
            if (layer := ref()) is not None
        ]
        set_hint(self.preview_hint, "\n".join(filter(None, lines)))
        self._showing_where = True

    def _say(self, text: str, error: bool = False) -> None:
        """Show ``text`` under Preview (hidden when empty), instead of where previews lie."""
        set_hint(self.preview_hint, text, error)
        self._showing_where = False

    def _preview_failed(self, job: PreviewJob, err: BaseException) -> None:
        self._runner.submit([])  # the other layers' previews are not drawn either
        self._report(err, job.live, job.layer.name)

    def _report(self, err: BaseException, live: bool, name: str = "") -> None:
        """Say why a preview was not drawn: under the button, and in a notification (once, for
        live previews)."""
        of = f" of '{name}'" * bool(name)
        message = f"Preview{of} failed: {in_dock_words(plain_error(err))}"
        if any(self._preview_of(layer) for layer in self._previewed):
            message = message.rstrip(".")
            message += ". The preview layers shown are of the last parameters that worked."
        self._say(message, error=True)
        if not (live and message == self._shown_error):
            show_error(message)
        self._shown_error = message
