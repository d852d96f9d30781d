"""Layer helpers: axes detection, layers -> engine images, outputs back into the viewer.

Outputs are always put back in the source layer's layout (same axes, channels where they were)
and on its scale and translate; a layer of the same name is updated in place, never duplicated.
The user's own layers are only read. napari-ssl's outputs are known by the ending of their name
(:func:`is_output_layer`), and are not offered as training inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from napari.layers import Image as ImageLayer
from napari.utils.transforms import Affine
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QListWidget

from napari_ssl.data.images import MAX_CHANNELS, SPLIT, DataError, Image, as_image

PREVIEW_SUFFIXES = {"crappify": "[crappified]", "masking": "[masked]"}  # Data dock, per task
LIVE_SUFFIX = "[live reconstruction]"  # the Train dock's preview of the network's output
# what an image must fit, and what else the user can do (LayerView.channel_axis_for)
CHECKPOINT_FIT = ("the checkpoint's model", "a checkpoint trained on images like this one")


@cache
def output_suffixes() -> tuple[str, ...]:
    """The name endings of every layer napari-ssl adds (previews, reconstructions, MAE views)."""
    # imported here: the Reconstruct dock imports this module
    from napari_ssl.widgets.reconstruct_dock import OUTPUT_NAMES, output_name

    reconstructions = {
        output_name("", key, task).strip() for key in OUTPUT_NAMES for task in PREVIEW_SUFFIXES
    }
    return (*PREVIEW_SUFFIXES.values(), LIVE_SUFFIX, *sorted(reconstructions))


def is_output_layer(layer: Any) -> bool:
    """Whether ``layer`` is one of napari-ssl's own outputs (not an input to train on)."""
    return layer.name.endswith(output_suffixes())


def reconstructable(layer: Any) -> bool:
    """Inputs of the Reconstruct dock: the user's layers and degraded copies (restoring those is
    what a crappify model is for), not reconstructions or MAE views."""
    degraded = (PREVIEW_SUFFIXES["crappify"], "[degraded]")
    return not is_output_layer(layer) or layer.name.endswith(degraded)


def layer_list(viewer: Any) -> QListWidget:
    """A list of layers to pick several from, its selection in the viewer theme's highlight."""
    widget = QListWidget()
    widget.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    widget.setMaximumHeight(110)
    highlight(widget, viewer)
    return widget


def select_by_name(widget: QListWidget, names: Any) -> None:
    """Select the layers of :func:`layer_list` ``widget`` named in ``names`` (as a click)."""
    for i in range(widget.count()):
        item = widget.item(i)
        item.setSelected(item.data(Qt.ItemDataRole.UserRole).name in names)


def theme_link(widget: QListWidget, viewer: Any) -> tuple[Any, Any]:
    """A link (for ``_links.link``) keeping ``widget``'s highlight in the viewer's theme."""
    return viewer.events.theme, lambda _event=None: highlight(widget, viewer)


def highlight(widget: QListWidget, viewer: Any) -> None:
    """Selected items in the highlight colour of the viewer's theme (Qt's own if unknown)."""
    from napari.utils.theme import get_theme

    try:
        color = get_theme(viewer.theme).current.as_hex()
    except (ValueError, KeyError, AttributeError):  # an unknown theme: Qt's own colours
        widget.setStyleSheet("")
        return
    widget.setStyleSheet(f"QListWidget::item:selected {{ background-color: {color}; }}")


def layer_data(layer: ImageLayer) -> Any:
    """The full-resolution array of a layer (level 0 of a multiscale layer), not read."""
    return layer.data[0] if layer.multiscale else layer.data


TIME_LABELS = frozenset({"t", "time"})


def guess_axes(shape: tuple[int, ...], named: int | None = None) -> tuple[int, int | None]:
    """Guess (spatial ndim 2 or 3, channel axis) from a shape: the channel axis ``named`` (RGB,
    a file's metadata) if any, else a small axis (at most :data:`MAX_CHANNELS`)."""
    if named is not None:
        return min(max(len(shape) - 1, 2), 3), named % len(shape)
    if len(shape) <= 2:
        return 2, None
    if len(shape) == 3:
        if shape[0] <= MAX_CHANNELS < min(shape[1:]):
            return 2, 0
        if shape[-1] <= MAX_CHANNELS < min(shape[:-1]):
            return 2, 2
        return 3, None
    small = [i for i, s in enumerate(shape) if s <= MAX_CHANNELS]
    return 3, small[0] if small else None  # none: the extra axis is said to be one (time?)


def describe_layer(layer: Any) -> str:
    """A short 'name: shape dtype' line for the layer list."""
    return f"{layer.name}  {tuple(layer_data(layer).shape)} {layer_data(layer).dtype}"


def check_training_layers(layers: list[Any]) -> None:
    """Refuse an empty choice, non-image layers and napari-ssl's own outputs as training data."""
    if not layers:
        raise DataError("No layer is selected in the viewer's layer list: click one first.")
    for layer in layers:
        check_image_layer(layer)
        if is_output_layer(layer):
            raise DataError(
                f"'{layer.name}' is an output of napari-ssl (a preview or a reconstruction), "
                "not an image to train on: select its source layer."
            )


def rename_outputs(layers: Any, old: str, new: str) -> None:
    """After the source layer ``old`` was renamed ``new`` in the layer list ``layers``: its
    previews, live reconstruction, reconstructions and MAE views follow the new name (unless
    that name is taken)."""
    for suffix in output_suffixes():
        was, now = f"{old} {suffix}", f"{new} {suffix}"
        if was in layers and now not in layers:
            layers[was].name = now


def check_image_layer(layer: Any) -> ImageLayer:
    """Refuse non-image layers with a message that says what to pick instead."""
    if not isinstance(layer, ImageLayer):
        kind = type(layer).__name__
        raise DataError(
            f"'{layer.name}' is a {kind} layer, not an image. Select Image layers "
            "(intensity data) for training and reconstruction."
        )
    return layer


def spatial(values: Any, layer: ImageLayer, channel_axis: int | None) -> tuple[float, ...]:
    """Drop the channel entry from a per-axis tuple (scale / translate) of a layer."""
    values = tuple(float(v) for v in values)
    if channel_axis is None or layer.rgb:  # napari keeps no scale entry for the RGB axis
        return values
    axis = channel_axis % (len(values))
    return values[:axis] + values[axis + 1 :]


def time_axes(layer: Any) -> tuple[int, ...]:
    """The axes of ``layer`` labelled as time ('t', 'time': a reader's or the user's labels)
    with several time points, beside at least two other axes (not a 2D kymograph)."""
    shape, labels = layer_data(layer).shape, getattr(layer, "axis_labels", ())
    if len(shape) < 3:
        return ()
    return tuple(
        i for i, label in enumerate(labels) if str(label).lower() in TIME_LABELS and shape[i] > 1
    )


def time_words(layer: Any) -> str:
    """What to do with ``layer``'s time axis, or '' when it has none."""
    axes = time_axes(layer)
    if not axes:
        return ""
    count = layer_data(layer).shape[axes[0]]
    return f"'{layer.name}': axis {axes[0]} is time ({count} time points); {SPLIT}."


@dataclass(frozen=True)
class LayerView:
    """What the engine needs of an image layer, taken on the GUI thread (a worker may use it)."""

    name: str
    data: Any  # level 0 of a multiscale layer; not read
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    rgb: bool
    time: str = ""  # what to do with its time axis ('' when it has none)

    @classmethod
    def of(cls, layer: Any) -> LayerView:
        layer = check_image_layer(layer)
        place = tuple(layer.scale), tuple(layer.translate)
        return cls(layer.name, layer_data(layer), *place, bool(layer.rgb), time_words(layer))

    def image(self, ndim: int, channel_axis: int | None) -> Image:
        """A channels-first engine :class:`Image` (lazy: nothing is read); a time series is
        refused (its time points are not channels, nor Z)."""
        if self.time:
            raise DataError(self.time)
        data = self.data
        if channel_axis is not None and not -data.ndim <= channel_axis < data.ndim:
            raise DataError(
                f"'{self.name}' has {data.ndim} axes; channel axis {channel_axis} does not "
                "exist. Pick another channel axis or 'none'."
            )
        image = as_image(data, self.name, ndim, channel_axis)
        image.scale = spatial(self.scale, self, channel_axis)[-ndim:]
        image.translate = spatial(self.translate, self, channel_axis)[-ndim:]
        return image

    def channel_axis_for(
        self,
        ndim: int,
        channels: int,
        preferred: int | None,
        fit_to: tuple[str, str] = CHECKPOINT_FIT,
    ) -> int | None:
        """The channel axis that fits a model of ``ndim`` spatial axes and ``channels`` input
        channels (``preferred``, the Data dock's choice, when several would); ``fit_to`` names
        what the image must fit and what else to do, for the message when it does not."""
        if self.time:
            raise DataError(self.time)
        shape = tuple(self.data.shape)
        if len(shape) == ndim + 1:
            fits = [a for a, size in enumerate(shape) if size == channels]
            if self.rgb:
                fits = fits[-1:] if fits and fits[-1] == len(shape) - 1 else []
            if preferred is not None and preferred % len(shape) in fits:
                return preferred % len(shape)
            if fits:
                return fits[-1] if fits[-1] == len(shape) - 1 else fits[0]
        elif len(shape) == ndim and channels == 1 and not self.rgb:
            return None
        what, alternative = fit_to
        raise DataError(
            f"'{self.name}' {shape} does not fit {what} ({ndim}D, {channels} channel(s)): pick "
            f"a {ndim}D image with {channels} channel(s), or {alternative}."
        )


def to_image(layer: Any, ndim: int, channel_axis: int | None) -> Image:
    """A channels-first engine :class:`Image` of a layer (lazy: nothing is read)."""
    return LayerView.of(layer).image(ndim, channel_axis)


def channel_axes(layers: list[Any], ndim: int, chosen: int | None) -> list[int | None]:
    """Each layer's channel axis: ``chosen`` (the Data dock's) for the first; for the others,
    the axis that gives them the first one's channel count in their own layout (an RGB layer
    beside a CYX one). Raises :class:`DataError` naming a layer that fits no axis."""
    first = to_image(layers[0], ndim, chosen)
    fit = (f"the first selected layer '{first.name}'", "train it on its own")
    views = [LayerView.of(layer) for layer in layers[1:]]
    return [chosen, *(v.channel_axis_for(ndim, first.channels, chosen, fit) for v in views)]


def to_layer_layout(array: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Channels-first ``(C, *S)`` back to the source layer's layout."""
    if channel_axis is None:
        return array[0]
    return np.moveaxis(array, 0, channel_axis % array.ndim)


def upsert_crop(
    viewer: Any,
    name: str,
    array: np.ndarray,
    source: ImageLayer,
    channel_axis: int | None,
    region: tuple[slice, ...],
) -> ImageLayer:
    """:func:`upsert_image` of ``array`` ``(C, *S)``, made from ``region`` (spatial) of
    ``source`` read with its channels on ``channel_axis``: in the source's layout, where the
    crop lies in it (a preview, the live reconstruction)."""
    data = to_layer_layout(array, channel_axis)
    offset = [r.start for r in region]
    if channel_axis is not None and not source.rgb:
        offset.insert(channel_axis % data.ndim, 0)
    return upsert_image(viewer, name, data, source, offset=tuple(offset))


def placement(source: ImageLayer, offset: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Where an output of ``source`` lies in the world: the source's scale, translate, rotate,
    shear and affine; ``offset`` (pixels) moves a crop to where it was cut, along the source's
    axes (rotated and sheared with them)."""
    translate = np.asarray(source.translate, dtype=float)
    if offset is not None:
        axes = Affine(scale=source.scale, rotate=source.rotate, shear=source.shear)
        translate = translate + axes.linear_matrix @ np.asarray(offset, dtype=float)
    return {
        "scale": source.scale,
        "translate": translate,
        "rotate": source.rotate,
        "shear": source.shear,
        "affine": source.affine,
    }


def _matrix(value: Any) -> np.ndarray:
    return value.affine_matrix if isinstance(value, Affine) else np.asarray(value, dtype=float)


def upsert_image(
    viewer: Any,
    name: str,
    data: np.ndarray,
    source: ImageLayer,
    offset: tuple[int, ...] | None = None,
) -> ImageLayer:
    """Add ``name`` where the source lies (:func:`placement`) with its contrast limits, or
    update its data in place if it exists (the contrast the user set stays).

    ``offset`` (in pixels, one per axis of ``data`` minus RGB) shifts a crop to where it lies in
    the source. RGB outputs take the source's integer type (napari draws float RGB as 0-1).
    """
    place = placement(source, offset)
    dtype = np.dtype(layer_data(source).dtype)
    if source.rgb and dtype.kind in "iu" and data.dtype != dtype:
        info = np.iinfo(dtype)
        data = np.clip(np.rint(data), info.min, info.max).astype(dtype)
    if name in viewer.layers and isinstance(viewer.layers[name], ImageLayer):
        layer = viewer.layers[name]
        if layer.data.shape == data.shape and layer.rgb == source.rgb:
            layer.data = data  # each setter below refreshes the layer: only when changed
            for key, value in place.items():
                if not np.allclose(_matrix(getattr(layer, key)), _matrix(value)):
                    setattr(layer, key, value)
            return layer
        viewer.layers.remove(layer)
    return viewer.add_image(
        data,
        name=name,
        units=source.units,
        rgb=source.rgb,
        contrast_limits=source.contrast_limits,
        **place,
    )
