"""``napari-ssl predict`` never overwrites what it reads: an output that is an input image, or two
inputs writing one file, is refused before anything is computed or written; outputs of an earlier
run are replaced, and the command says so. Real tiny checkpoints (crappify and masking)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_ssl.cli import main
from napari_ssl.data.images import as_image
from napari_ssl.engine.trainer import train
from napari_ssl.results import ResultsLayout
from test_cli import files_under, run_cli
from test_cli_messages import trained  # noqa: F401  (shared fixture: a 1-epoch crappify job)
from test_masking_e2e import masking_config
from test_training import no_charts, one_thread  # noqa: F401  (shared fixtures)


def write_images(folder: Path, sem: np.ndarray, *names: str) -> list[Path]:
    """Small distinct crops of the SEM sample as ``folder/<name>`` (.tif, or .npy / .png)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        crop = np.ascontiguousarray(sem[i * 40 : i * 40 + 40, :48])
        path = folder / name
        if path.suffix == ".npy":
            np.save(path, crop)
        else:
            tifffile.imwrite(path, crop)
        paths.append(path)
    return paths


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in files_under(folder)}


@pytest.mark.parametrize("given", ["folder", "file", "other spelling"])
def test_output_into_the_input_folder_is_refused(
    trained: Path,  # noqa: F811
    tmp_path: Path,
    sem_2d: np.ndarray,
    given: str,
) -> None:
    same = tmp_path / "same"
    sem_a, _ = write_images(same, sem_2d, "semA.tif", "semB.tif")
    before = snapshot(tmp_path)
    inputs = {"folder": [same], "file": [sem_a], "other spelling": [same / ".." / "same"]}[given]
    ran = run_cli("predict", "--checkpoint", trained, "--input", *inputs, "--output", same)
    hit = {"folder": f"{same / 'semA.tif'}, {same / 'semB.tif'}", "file": str(sem_a)}.get(
        given, f"{same / '..' / 'same' / 'semA.tif'}, {same / '..' / 'same' / 'semB.tif'}"
    )
    expected = (
        f"napari-ssl predict: --output {same} would overwrite input image(s) {hit} with "
        f"predictions. Nothing was written; give an --output folder that holds no input images "
        f"(e.g. {same / 'predicted'}).\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)
    assert snapshot(tmp_path) == before  # the raw images byte-identical, nothing added


@pytest.mark.parametrize("names", [("img.tif", "img.tif"), ("img.tif", "img.npy")])
def test_two_inputs_writing_one_file_are_refused(
    trained: Path,  # noqa: F811
    tmp_path: Path,
    sem_2d: np.ndarray,
    names: tuple[str, str],
) -> None:
    (first,) = write_images(tmp_path / "c1", sem_2d, names[0])
    (second,) = write_images(tmp_path / "c2", sem_2d[100:], names[1])
    before = snapshot(tmp_path)
    coll = tmp_path / "coll"
    ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / "c1", tmp_path / "c2",
                  "--output", coll)  # fmt: skip
    expected = (
        f"napari-ssl predict: two inputs would write the same output file: {first} and {second} "
        f"-> {coll / 'img.tif'}. Nothing was written; predict them into separate --output "
        "folders, or rename one of them.\n"
    )
    assert (ran.code, ran.out, ran.err) == (1, "", expected)
    assert snapshot(tmp_path) == before and not coll.exists()  # not even the folder


def test_rerun_replaces_its_outputs_and_says_so(
    trained: Path,  # noqa: F811
    tmp_path: Path,
    sem_2d: np.ndarray,
) -> None:
    img, other = write_images(tmp_path / "c1", sem_2d, "img.tif", "other.tif")
    pred = tmp_path / "pred"
    # the same image given twice (its folder and itself) is predicted once
    ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / "c1", img,
                  "--output", pred)  # fmt: skip
    assert ran.code == 0, ran.err
    assert ran.out == f"img.tif -> {pred / 'img.tif'}\nother.tif -> {pred / 'other.tif'}\n"
    first = tifffile.imread(pred / "img.tif")
    assert first.shape == (40, 48) and np.isfinite(first).all()
    tifffile.imwrite(pred / "img.tif", np.zeros_like(first))  # stale from an earlier run
    tifffile.imwrite(pred / "notes.tif", np.ones((4, 4), np.uint8))  # not predict's: kept
    kept = (pred / "notes.tif").read_bytes()
    again = run_cli("predict", "--checkpoint", trained, "--input", img, other, "--output", pred)
    assert again.code == 0, again.err
    assert again.out.splitlines()[0] == f"replacing 2 existing file(s) in {pred}"
    np.testing.assert_array_equal(tifffile.imread(pred / "img.tif"), first)
    assert (pred / "notes.tif").read_bytes() == kept
    assert sorted(p.name for p in files_under(pred)) == ["img.tif", "notes.tif", "other.tif"]


@pytest.mark.parametrize("bad", ["stack", "corrupt"])
def test_a_bad_image_anywhere_in_a_batch_is_refused_before_writing(
    trained: Path,  # noqa: F811
    tmp_path: Path,
    sem_2d: np.ndarray,
    bad: str,
) -> None:
    """The last of three inputs does not fit the 2D checkpoint (a Z stack) or is no image:
    refused before the first output is written (a long batch does not die on its last file)."""
    write_images(tmp_path / "in", sem_2d, "a.tif", "b.tif")
    last = tmp_path / "in" / "z.tif"
    if bad == "stack":
        tifffile.imwrite(last, np.stack([sem_2d[:40, :48]] * 3), imagej=True,
                         metadata={"axes": "ZYX"})  # fmt: skip
    else:
        last.write_bytes(b"II*\x00 not a tiff")
    pred = tmp_path / "pred"
    ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / "in", "--output", pred)
    said = "'z.tif' is a 3D stack" if bad == "stack" else f"cannot read '{last}'"
    assert ran.code == 1 and ran.out == "" and said in ran.err
    assert not pred.exists()


def test_masking_views_are_planned_too(tmp_path: Path, sem_2d: np.ndarray) -> None:
    """A masking checkpoint writes <stem>.tif and <stem>_<view>.tif: 'a_original.tif' as an
    input would collide with a.tif's view; a re-run replaces all five files of an image."""
    layout = ResultsLayout(tmp_path / "res", "mae", 1)
    cfg = masking_config(epochs=1, patches_per_epoch=4)
    images = [as_image(sem_2d[:64, :64].copy(), "sem", 2)]
    for _ in train(cfg, images, layout=layout):
        pass
    ckpt = layout.best_checkpoint
    a, a_view = write_images(tmp_path / "in", sem_2d, "a.tif", "a_original.tif")
    before = snapshot(tmp_path / "in")
    pred = tmp_path / "pred"
    clash = run_cli("predict", "--checkpoint", ckpt, "--input", tmp_path / "in", "--output", pred)
    assert clash.code == 1 and clash.out == ""
    assert f"{a} and {a_view} -> {pred / 'a_original.tif'}" in clash.err
    assert snapshot(tmp_path / "in") == before and not pred.exists()
    (c_a,) = write_images(tmp_path / "c", sem_2d, "a.tif")  # its a_original view: an input
    into_input = run_cli("predict", "--checkpoint", ckpt, "--input", c_a, a_view, "--output",
                         tmp_path / "in")  # fmt: skip
    assert into_input.code == 1 and f"input image(s) {a_view} with" in into_input.err
    assert snapshot(tmp_path / "in") == before

    ran = run_cli("predict", "--checkpoint", ckpt, "--input", a, "--output", pred)
    assert ran.code == 0, ran.err
    assert not ran.out.startswith("replacing")
    written = snapshot(pred)
    assert len(written) == 5
    again = run_cli("predict", "--checkpoint", ckpt, "--input", a, "--output", pred)
    assert again.code == 0, again.err
    assert again.out.splitlines()[0] == f"replacing 5 existing file(s) in {pred}"
    assert snapshot(pred) == written  # seeded: the same files again


def test_output_help_says_what_is_replaced(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "files there from an earlier run are replaced" in out
    assert "refused, with nothing written, when an output would overwrite an input image" in out


def test_the_inputs_pixel_size_is_kept(
    trained: Path,  # noqa: F811
    tmp_path: Path,
    sem_2d: np.ndarray,
) -> None:
    """An ImageJ TIFF's pixel size (here in nm) comes back on its output, in µm as ImageJ
    reads it; a plain TIFF (its dots per inch say nothing of pixels) gives none."""
    from napari_ssl.tiffs import imagej_pixel_size

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "sized.tif", sem_2d[:40, :48], imagej=True,
                     resolution=(1 / 250, 1 / 500), metadata={"unit": "nm"})  # fmt: skip
    write_images(tmp_path / "in", sem_2d, "plain.tif")
    ran = run_cli("predict", "--checkpoint", trained, "--input", tmp_path / "in", "--output",
                  tmp_path / "pred")  # fmt: skip
    assert ran.code == 0, ran.err
    assert imagej_pixel_size(tmp_path / "pred" / "sized.tif", 2) == pytest.approx((0.5, 0.25))
    assert imagej_pixel_size(tmp_path / "pred" / "plain.tif", 2) is None
