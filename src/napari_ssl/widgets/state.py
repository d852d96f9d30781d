"""The evented state shared by the docks of one viewer.

Every dock of a viewer gets the same :class:`SslState` from :func:`state_for`: the selected layers
and their axes, the config built so far, the checkpoint of the latest training, and whether a
training or reconstruction is running. Docks listen to ``state.events.<field>``.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass, field
from typing import Any

from psygnal import evented

from napari_ssl.config import Config


@dataclass(frozen=True)
class TrainingInputs:
    """What the latest training of a viewer trained on (the Export dock saves these layers,
    followed through renames; a layer removed since is named as it was at Start)."""

    checkpoints_dir: str  # where its run writes its checkpoints (resolved)
    layers: tuple[weakref.ref, ...]  # the layers (weakly), or () for a folder
    names: tuple[str, ...]  # their names at Start
    ndim: int
    channel_axes: tuple[int | None, ...]  # each layer's channel axis

    @classmethod
    def of(
        cls, checkpoints_dir: str, layers: list[Any], ndim: int, axes: list[int | None]
    ) -> TrainingInputs:
        refs = tuple(weakref.ref(layer) for layer in layers)
        return cls(checkpoints_dir, refs, tuple(lyr.name for lyr in layers), ndim, tuple(axes))


@evented
@dataclass
class SslState:
    layers: tuple[str, ...] = ()  # names of the selected Image layers
    folder: str = ""  # a dataset folder, used instead of layers when set
    ndim: int = 2  # spatial axes: 2 or 3
    channel_axis: int | None = None  # axis of the layers' data holding channels (None: one channel)
    cfg: Config = field(default_factory=Config)
    checkpoint: str = ""  # latest checkpoint written by a training (or picked by the user)
    result_dir: str = ""  # result folder of the latest training
    run_name: str = ""
    run_id: str = ""
    closed_run: str = ""  # the run id of a training stopped by closing the Train dock
    running: bool = False  # a training is running (Start is refused meanwhile)
    trained_on: TrainingInputs | None = None  # the inputs of the latest training

    def update_cfg(self, **sections: Any) -> None:
        """Replace whole config sections (``data=...``, ``pretext=...``) and emit one event."""
        self.cfg = dataclasses.replace(self.cfg, **sections)


_STATES: dict[int, tuple[weakref.ref, SslState]] = {}


def unwrap(viewer: Any) -> Any:
    """The real viewer behind napari's ``PublicOnlyProxy`` (docks get the proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def state_for(viewer: Any) -> SslState:
    """The one state object of ``viewer`` (created on first use, dropped with the viewer)."""
    viewer = unwrap(viewer)
    for key in [k for k, (ref, _) in _STATES.items() if ref() is None]:
        del _STATES[key]
    entry = _STATES.get(id(viewer))
    if entry is None or entry[0]() is not viewer:
        entry = (weakref.ref(viewer), SslState())
        _STATES[id(viewer)] = entry
        # a layer removed during a run is freed then, not when the run ends (gui_collection)
        viewer.layers.events.removed.connect(_free_removed_layer)
        _follow_renames(viewer.layers)
    return entry[1]


def _follow_renames(layers: Any) -> None:
    """A renamed layer's outputs (previews, reconstructions...) take its new name, whichever
    docks are open. napari's ``renamed`` event gives no old name: the names are kept here."""
    from napari_ssl.widgets._layers import rename_outputs

    names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    for layer in layers:
        names[layer] = layer.name

    def inserted(event: Any) -> None:
        names[event.value] = event.value.name

    def renamed(event: Any) -> None:
        layer = event.source[event.index]
        if sum(other.name == layer.name for other in event.source) > 1:
            return  # a name taken: napari renames it again ("B" -> "B [1]"), then it counts
        old, names[layer] = names.get(layer), layer.name
        if old is not None and old != layer.name:
            rename_outputs(event.source, old, layer.name)

    layers.events.inserted.connect(inserted)
    layers.events.renamed.connect(renamed)


def _free_removed_layer(event: Any = None) -> None:
    from napari_ssl.widgets import gui_collection

    if gui_collection.active():
        gui_collection.collect_everything_soon()
