"""Data & pretext dock: layer picking, axes detection, previews updated in place, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import SCALE, same, screenshot
from qtpy.QtCore import QPoint

pytestmark = pytest.mark.gui


def test_detects_axes(viewer, docks, nuclei_3d):
    from napari_ssl.widgets._layers import guess_axes

    data = docks["Data and pretext"]
    viewer.add_image(nuclei_3d, name="nuclei", scale=(0.29, 0.26, 0.26))
    assert data.state.layers == ("nuclei",)  # a new layer is picked when none was
    assert (data.state.ndim, data.state.channel_axis) == (3, None)
    rgb = viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="rgb", rgb=True)
    viewer.add_image(np.zeros((2, 60, 70), np.uint16), name="cyx")
    data.select([rgb.name])
    assert (data.state.ndim, data.state.channel_axis) == (2, 2)
    assert guess_axes((2, 5, 3, 64, 64), named=2) == (3, 2)  # TZCYX: 3D at most, C kept
    assert guess_axes((20, 16, 64, 64)) == (3, None)  # no axis few enough for channels
    data.select(["cyx"])
    assert (data.state.ndim, data.state.channel_axis) == (2, 0)
    assert data.axes.detected.text() == (
        "detected: 2D, channel axis 0 (shape (2, 60, 70)); edit if wrong"
    )
    data.ndim.setCurrentIndex(1)  # the user says: it is 3D after all
    data.channel_axis.setCurrentIndex(0)
    assert (data.state.ndim, data.state.channel_axis) == (3, None)
    assert data.axes.detected.text() == (
        "detected: 2D, channel axis 0 (shape (2, 60, 70)); you chose 3D, no channel axis"
    )
    assert data.state.cfg.data.ndim == 3 and data.state.cfg.data.patch_size == (64, 128, 128)
    data.ndim.setCurrentIndex(0)  # an untouched default patch follows the dimensions back
    assert data.state.cfg.data.patch_size == (256, 256)


def test_a_time_series_is_split_into_time_points_first(qtbot, viewer, docks, sem_2d, notes):
    """A layer whose axis is labelled time: the dock says to split it (not channels, nor Z);
    its time points, split as napari's Split Stack does, preview and train."""
    from napari.layers.utils.stack_utils import stack_to_images

    movie = np.stack([np.roll(sem_2d[:64, :64], 3 * t, axis=1) for t in range(5)])
    layer = viewer.add_image(movie, name="movie", axis_labels=("t", "y", "x"))
    data, train = docks["Data and pretext"], docks["Train"]
    assert data.axes.detected.text() == (
        "detected: 2D, no channel axis (shape (5, 64, 64); axis 0 is time; right-click the "
        "layer ▸ Split Stack); edit if wrong"
    )
    said = "'movie': axis 0 is time (5 time points); napari-ssl works on 2D or 3D images"
    data.run_preview()
    assert notes[-1][0] == "error" and said in notes[-1][1]
    assert "movie [crappified]" not in viewer.layers
    train.start_button.click()
    assert notes[-1][1].startswith(f"Cannot start training: {said}")
    viewer.layers.remove(layer)
    for point in stack_to_images(layer, axis=0):  # right-click ▸ Split Stack
        viewer.add_layer(point)
    viewer.add_image(movie[:1], name="one", axis_labels=("t", "y", "x"))  # no series: 1 point
    viewer.add_image(movie[:, 0], name="kymograph", axis_labels=("time", "x"))  # a 2D image
    data.select(["one", "kymograph"])
    assert "time" not in data.axes.detected.text()
    data.run_preview()
    assert "one [crappified]" in viewer.layers and "kymograph [crappified]" in viewer.layers
    data.select([f"movie layer {t}" for t in range(5)])
    assert (data.state.ndim, data.state.channel_axis) == (2, None)
    data.run_preview()
    assert all(f"movie layer {t} [crappified]" in viewer.layers for t in range(5))


def test_crappify_preview_updates_in_place(qtbot, viewer, docks, sem_layer):
    data = docks["Data and pretext"]
    original = sem_layer.data.copy()
    data.noise.setValue(0.1)
    data.run_preview()
    name = "sem [crappified]"
    preview = viewer.layers[name]
    assert preview.data.shape == sem_layer.data.shape and preview.data.dtype == np.uint8
    assert tuple(preview.scale) == SCALE and tuple(preview.translate) == (10.0, 20.0)
    assert not same(preview.data, original)
    first = preview.data.copy()
    count = len(viewer.layers)
    data.noise.setValue(0.4)  # live update after the first preview (debounced)
    qtbot.waitUntil(lambda: not same(viewer.layers[name].data, first), timeout=5000)
    assert len(viewer.layers) == count and viewer.layers[name] is preview
    assert preview.data.std() > 0 and same(sem_layer.data, original)
    screenshot(viewer, "data_dock_crappify", "Data and pretext")


def test_a_small_preview_waits_for_torch_in_the_preview_thread(
    qtbot, viewer, docks, sem_layer, monkeypatch
):
    """Before torch is imported (its import freezes for a second), even a small in-memory
    preview is computed in the preview thread; afterwards it is drawn at once."""
    from types import SimpleNamespace

    from napari_ssl.widgets import preview_runner

    monkeypatch.setattr(preview_runner, "sys", SimpleNamespace(modules={}))  # torch not imported
    data = docks["Data and pretext"]
    data.run_preview()
    assert "sem [crappified]" not in viewer.layers
    qtbot.waitUntil(lambda: "sem [crappified]" in viewer.layers, timeout=10_000)
    monkeypatch.undo()
    first = viewer.layers["sem [crappified]"].data.copy()
    data.noise.setValue(0.4)
    data.run_preview()
    assert not same(viewer.layers["sem [crappified]"].data, first)


def test_new_layer_data_is_previewed_and_the_old_is_not_kept(qtbot, viewer, docks, sem_layer):
    """Replacing a layer's data: its preview follows, and nothing read of the old data keeps
    the old array alive."""
    import gc
    import weakref

    data = docks["Data and pretext"]
    data.run_preview()
    old = weakref.ref(sem_layer.data)
    bright = sem_layer.data.mean()
    sem_layer.data = 255 - sem_layer.data
    gc.collect()
    assert old() is None
    data.noise.setValue(0.05)
    preview = viewer.layers["sem [crappified]"]
    qtbot.waitUntil(lambda: abs(preview.data.mean() - (255 - bright)) < 5, timeout=5000)


def test_one_preview_per_layer_and_a_deleted_one_stays_deleted(
    qtbot, viewer, docks, sem_layer, monkeypatch
):
    from napari_ssl.pretext import preview

    reads = []  # the whole image's range is read once, not at every parameter change
    real = preview.data_range
    monkeypatch.setattr(preview, "data_range", lambda *a: reads.append(1) or real(*a))
    data = docks["Data and pretext"]
    data.run_preview()
    data.noise.setValue(0.3)
    qtbot.wait(500)  # the debounced live preview
    assert len(reads) == 1 and "sem [crappified]" in viewer.layers
    data.task.setCurrentText("masking")  # the preview follows the task: replaced, not added
    qtbot.waitUntil(lambda: "sem [masked]" in viewer.layers, timeout=5000)
    assert "sem [crappified]" not in viewer.layers
    viewer.layers.remove("sem [masked]")  # the user deletes the preview: it stays deleted
    data.ratio.setValue(0.6)
    data.mask_type.setCurrentText("random")
    qtbot.wait(500)
    assert [layer.name for layer in viewer.layers] == ["sem"]
    assert len(reads) == 1  # masking's preview does not need the whole image's range


def test_multichannel_preview_keeps_layout(viewer, docks, sem_2d):
    data = docks["Data and pretext"]
    stack = np.stack([sem_2d[:64, :80], sem_2d[64:128, :80]], axis=-1)  # YXC
    viewer.add_image(stack, name="yxc")
    data.select(["yxc"])
    assert (data.state.ndim, data.state.channel_axis) == (2, 2)
    data.run_preview()
    assert viewer.layers["yxc [crappified]"].data.shape == stack.shape


def test_errors_are_notifications(viewer, docks, notes, sem_layer):
    data = docks["Data and pretext"]
    data.select([])
    data.run_preview()
    assert notes and notes[-1][0] == "error" and "No image layer selected" in notes[-1][1]
    labels = viewer.add_labels(np.zeros((20, 20), np.int32), name="mask")
    viewer.layers.selection = {labels}
    data._use_viewer_selection()
    assert "Labels layer" in notes[-1][1] and "Image layers" in notes[-1][1]
    assert "mask" not in data.state.layers
    data.select(["sem"])
    data.task.setCurrentText("masking")
    data.token.setValue(64)
    data.channel_axis.setCurrentIndex(1)  # "axis 0" on a 2D image: impossible
    data.run_preview()
    assert notes[-1][0] == "error" and "sem" in notes[-1][1]
    assert not labels.data.any() and "sem [masked]" not in viewer.layers


def test_big_layer_previews_a_bounded_crop(qtbot, viewer, docks):
    data = docks["Data and pretext"]
    big = np.zeros((3000, 2500), np.uint8)
    big[::7] = 200
    viewer.add_image(big, name="big", scale=(2.0, 2.0))
    data.run_preview()
    qtbot.waitUntil(lambda: "big [crappified]" in viewer.layers, timeout=10_000)
    preview = viewer.layers["big [crappified]"]
    assert preview.data.shape == (2048, 2048)
    assert tuple(preview.translate) == (2 * 476, 2 * 226)  # centred on the view: the source's
    assert data.preview_hint.text() == (
        "Preview of 'big': Y 476–2523, X 226–2273 of 3000 × 2500, around the current view "
        "(at most 2048 × 2048 are previewed)."
    )
    viewer.layers["big"].name = "stripes"  # the hint names the source as it is now
    assert data.preview_hint.text().startswith("Preview of 'stripes': Y 476–2523")


def test_a_cropped_preview_lies_on_its_source_rotated_and_sheared(
    qtbot, viewer, docks, sem_2d, monkeypatch
):
    from napari_ssl.widgets import data_previews

    monkeypatch.setitem(data_previews.PREVIEW_MAX, 2, (64, 48))
    affine = np.array([[1.0, 0.0, 7.0], [0.1, 1.0, -3.0], [0.0, 0.0, 1.0]])
    place = {"scale": (2.0, 0.5), "translate": (100.0, -50.0), "rotate": 30, "shear": [0.3]}
    source = viewer.add_image(sem_2d[:300, :200].copy(), name="tilted", affine=affine, **place)
    data = docks["Data and pretext"]
    data.run_preview()
    preview = viewer.layers["tilted [crappified]"]
    assert preview.data.shape == (64, 48)
    crop = data._where[0][1]  # where the crop was cut (pixels of the source)
    assert (crop[0].start, crop[1].start) != (0, 0)
    for pixel in ((0, 0), (63, 5), (20, 47)):
        at_source = np.add(pixel, (crop[0].start, crop[1].start))
        assert np.allclose(preview.data_to_world(pixel), source.data_to_world(at_source))


OUTPUTS = (
    "[crappified]", "[masked]", "[live reconstruction]", "[reconstruction]", "[degraded]",
    "[MAE original]", "[MAE masked]", "[MAE reconstruction]", "[MAE reconstruction + visible]",
)  # fmt: skip


def test_outputs_are_not_offered_as_inputs(viewer, docks, sem_layer, notes):
    data = docks["Data and pretext"]
    data.run_preview()  # a real output: "sem [crappified]"
    for suffix in OUTPUTS[1:]:
        viewer.add_image(np.zeros((8, 8), np.uint8), name=f"sem {suffix}")
    viewer.add_image(sem_layer.data.copy(), name="sem")  # napari names the copy "sem [1]"
    offered = [data.layer_list.item(i).data(256).name for i in range(data.layer_list.count())]
    assert offered == ["sem", "sem [1]"]
    assert data.state.layers == ("sem",)
    viewer.layers.selection = {viewer.layers["sem [MAE masked]"]}
    data._use_viewer_selection()
    assert notes[-1][0] == "error" and "output of napari-ssl" in notes[-1][1]
    assert data.state.layers == ("sem",)
    viewer.layers.selection = {viewer.layers["sem [1]"]}
    data.use_selection.click()
    assert data.state.layers == ("sem [1]",)


def test_pretext_page_takes_its_own_height(qtbot, viewer, docks, sem_layer):
    """The task's page takes its own height: the crappify page once had masking's gap."""
    data = docks["Data and pretext"]
    viewer.window._wrapped_dock_widgets["Data and pretext"].raise_()

    def top(widget) -> int:
        return widget.mapTo(data, QPoint(0, 0)).y()

    def below(page) -> int:  # pixels from the page's bottom to the next row (patch size)
        return top(data.patch_xy) - top(page) - page.height()

    crappify, masking = data.pretext.pages
    assert crappify.sizeHint().height() < masking.minimumSizeHint().height()  # 2 rows against 3
    for task in ("crappify", "masking", "crappify"):
        data.task.setCurrentText(task)
        page = data.pretext.pages[data.task.currentIndex()]
        lo, hi = page.minimumSizeHint().height(), page.sizeHint().height()
        margin = top(data.patch_z) - top(data.patch_xy) - data.patch_xy.height()  # row spacing

        def laid_out(p=page, lo=lo, hi=hi, m=margin) -> bool:
            # its own height (not clipped, not padded), then the next row: no overlap, no gap
            return lo <= p.height() <= hi and 0 <= below(p) <= m

        qtbot.waitUntil(laid_out)
        screenshot(viewer, f"data_dock_page_{task}", "Data and pretext")


def test_a_renamed_layer_stays_selected_with_its_preview(qtbot, viewer, docks, sem_layer):
    data, train = docks["Data and pretext"], docks["Train"]
    viewer.add_image(sem_layer.data[:64, :64].copy(), name="other")  # listed after it
    data.select(["sem"])
    data.run_preview()
    sem_layer.name = "first"
    sem_layer.name = "renamed"  # and again: the dock still follows
    assert data.state.layers == ("renamed",)
    assert [item.text().split()[0] for item in data.layer_list.selectedItems()] == ["renamed"]
    assert "renamed [crappified]" in viewer.layers and "sem [crappified]" not in viewer.layers
    first = viewer.layers["renamed [crappified]"].data.copy()
    data.noise.setValue(0.45)  # the renamed preview still follows the parameters
    renamed = viewer.layers["renamed [crappified]"]
    qtbot.waitUntil(lambda: not same(renamed.data, first), timeout=5000)
    assert [img.name for img in train._images()] == ["renamed"]


def test_a_live_preview_error_is_shown_once(qtbot, viewer, docks, notes, sem_layer):
    data = docks["Data and pretext"]
    data.task.setCurrentText("masking")
    data.run_preview()
    assert "sem [masked]" in viewer.layers
    data.channel_axis.setCurrentIndex(1)  # "axis 0" on a 2D image: the live preview fails
    qtbot.waitUntil(lambda: any(sev == "error" for sev, _ in notes), timeout=5000)
    data.ratio.setValue(0.6)  # still failing: not said again
    qtbot.wait(2 * 300 + 200)
    assert len([msg for sev, msg in notes if sev == "error"]) == 1
    data.run_preview()  # asked for: said again
    assert len([msg for sev, msg in notes if sev == "error"]) == 2


def test_a_lazy_preview_is_read_once_around_the_view(qtbot, viewer, docks, monkeypatch):
    """A lazy volume's crop is read in the preview thread, around the slice and camera centre,
    once: a parameter change only redoes the pretext (in that thread too, for a crop this big);
    the hint says where the crop lies."""
    import threading

    import dask.array as da

    from napari_ssl.data.images import Image
    from napari_ssl.pretext import preview
    from napari_ssl.widgets import data_previews, preview_runner

    monkeypatch.setitem(data_previews.PREVIEW_MAX, 3, (8, 64, 64))  # a small stand-in for 64x512²
    monkeypatch.setattr(preview_runner, "INLINE_MAX", 1000)
    reads, pretexts = [], []  # the threads that read the layer / degrade a crop

    def recorded(calls, function):
        def run(*args, **kwargs):
            calls.append(threading.current_thread().name)
            return function(*args, **kwargs)

        return run

    monkeypatch.setattr(Image, "read", recorded(reads, Image.read))
    monkeypatch.setattr(preview, "apply_pretext", recorded(pretexts, preview.apply_pretext))

    def block(block_info=None):
        info = block_info[None]
        rng = np.random.default_rng(sum(info["chunk-location"]))
        return (rng.random(info["chunk-shape"]) * 1000).astype(np.uint16)

    chunks = ((2,), (10,) * 4, (50,) * 4, (50,) * 4)  # CZYX (2, 40, 200, 200)
    lazy = da.map_blocks(block, dtype=np.uint16, chunks=chunks)
    place = {"scale": (1.0, 2.0, 0.5, 0.5), "translate": (0.0, 100.0, 10.0, 20.0)}
    source = viewer.add_image(lazy, name="lazy", contrast_limits=(0, 1000), **place)
    data = docks["Data and pretext"]
    assert (data.state.ndim, data.state.channel_axis) == (3, 0)
    viewer.dims.set_point(1, 100.0 + 2.0 * 5)  # slice Z 5
    camera = viewer.scene.camera
    camera.center = (*camera.center[:-2], 10.0 + 0.5 * 150, 20.0 + 0.5 * 30)  # Y 150, X 30
    data.preview.click()
    assert data.preview_hint.text() == "Computing the preview of 'lazy'…"
    assert "lazy [crappified]" not in viewer.layers  # the GUI is not held up meanwhile
    qtbot.waitUntil(lambda: "lazy [crappified]" in viewer.layers, timeout=10_000)
    assert reads and "MainThread" not in reads + pretexts
    preview = viewer.layers["lazy [crappified]"]
    assert preview.data.shape == (2, 8, 64, 64)
    assert tuple(preview.scale) == tuple(source.scale)
    assert tuple(preview.translate) == (0.0, 100.0 + 2.0 * 2, 10.0 + 0.5 * 119, 20.0)
    assert data.preview_hint.text() == (
        "Preview of 'lazy': Z 2–9, Y 119–182, X 0–63 of 40 × 200 × 200, around the current "
        "view (at most 8 × 64 × 64 are previewed)."
    )
    crop = np.asarray(lazy[:, 2:10, 119:183, 0:64])
    assert not same(preview.data, crop) and abs(preview.data.mean() - crop.mean()) < 50
    reads.clear()
    pretexts.clear()
    first = preview.data.copy()
    data.noise.setValue(0.4)  # the kept crop, degraded again: nothing read
    qtbot.waitUntil(lambda: not same(preview.data, first), timeout=10_000)
    assert not reads and viewer.layers["lazy [crappified]"] is preview
    assert pretexts and "MainThread" not in pretexts
    viewer.dims.set_point(1, 100.0 + 2.0 * 30)  # out of the crop: the next change follows
    data.noise.setValue(0.3)
    qtbot.waitUntil(lambda: preview.translate[1] == 100.0 + 2.0 * 27, timeout=10_000)
    assert reads and "Z 27–34" in data.preview_hint.text()


def test_pretext_pages_line_up_with_the_form(qtbot, viewer, docks, sem_layer):
    """The task's own fields (a form in a stacked page) start where 'Task' and 'Patch size' do."""
    data = docks["Data and pretext"]
    viewer.window._wrapped_dock_widgets["Data and pretext"].raise_()

    def left(widget) -> int:
        return widget.mapTo(data, QPoint(0, 0)).x()

    pages = {"crappify": (data.noise, data.factor), "masking": (data.mask_type, data.token)}
    for task, fields in pages.items():
        data.task.setCurrentText(task)
        qtbot.waitUntil(lambda f=fields: {left(w) for w in (*f, data.task, data.patch_xy)}
                        == {left(data.patch_xy)})  # fmt: skip
        screenshot(viewer, f"data_dock_aligned_{task}", "Data and pretext")


def test_renaming_to_a_taken_name_keeps_each_preview_with_its_layer(qtbot, viewer, docks, sem_2d):
    """napari renames "A" to "B" and then to "B [1]": B keeps its preview, A's follows A."""
    for name, rows in (("A", slice(0, 64)), ("B", slice(64, 128))):
        viewer.add_image(sem_2d[rows, :64].copy(), name=name)
    data = docks["Data and pretext"]
    data.select(["A", "B"])
    data.preview.click()
    a, b = viewer.layers["A"], viewer.layers["B"]
    a_preview, b_preview = viewer.layers["A [crappified]"], viewer.layers["B [crappified]"]
    a.name = "B"
    assert a.name == "B [1]"
    assert viewer.layers["B [1] [crappified]"] is a_preview
    assert viewer.layers["B [crappified]"] is b_preview
    before = a_preview.data.copy(), b_preview.data.copy()
    data.noise.setValue(0.5)  # both previews are still kept updated, each from its own layer
    qtbot.waitUntil(lambda: not same(b_preview.data, before[1]), timeout=5000)
    assert not same(a_preview.data, before[0])
    for preview, source, other in ((a_preview, a, b), (b_preview, b, a)):
        near = np.corrcoef(preview.data.ravel(), source.data.ravel())[0, 1]
        assert near > np.corrcoef(preview.data.ravel(), other.data.ravel())[0, 1]


def test_a_preview_after_its_dock_closed_is_not_drawn(qtbot, viewer, docks):
    import dask.array as da

    viewer.add_image(da.zeros((2048, 2048), dtype=np.uint16, chunks=512) + 7, name="lazy")
    data = docks["Data and pretext"]
    data.select(["lazy"])
    data.preview.click()
    assert data._runner.busy  # read in the preview thread
    viewer.window.remove_dock_widget(data)
    data.deleteLater()
    qtbot.wait(3000)
    assert "lazy [crappified]" not in viewer.layers


def test_the_hint_goes_when_the_preview_does(qtbot, viewer, docks):
    viewer.add_image(np.zeros((3000, 2500), np.uint8) + 3, name="big")
    data = docks["Data and pretext"]
    data.select(["big"])
    data.preview.click()
    qtbot.waitUntil(lambda: "big [crappified]" in viewer.layers, timeout=30_000)
    assert data.preview_hint.text().startswith("Preview of 'big'")
    viewer.layers.remove("big [crappified]")
    assert data.preview_hint.isHidden()
