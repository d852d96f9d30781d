"""A dataset folder that cannot be read says why: missing or empty folders, a split that is
not there, damaged files (without a library's log lines beside the message)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_ssl.data.folders import load_folder, resolve_dataset
from napari_ssl.data.images import DataError


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"folder not found: '.*nowhere'.*DATA\.TRAIN\.PATH"):
        load_folder(tmp_path / "nowhere", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images in '.*empty'"):
        load_folder(tmp_path / "empty", 2)


def test_a_dataset_folder_without_the_split_says_where_it_goes(tmp_path: Path) -> None:
    (tmp_path / "ds" / "test" / "x").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        resolve_dataset(tmp_path / "ds", "train")
    assert str(info.value) == (
        f"no train/x in '{tmp_path / 'ds'}' (it has test/x): the train images go in "
        f"'{tmp_path / 'ds' / 'train' / 'x'}'."
    )


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x00junk" * 20, "not a TIFF file"),  # tifffile's words
        (b"II*\x00\xff\xff\xff\x00" + b"\x00" * 40, "the file is damaged, or not an image."),
    ],
)
def test_corrupt_tif(tmp_path: Path, capfd, content: bytes, said: str) -> None:
    (tmp_path / "x.tif").write_bytes(content)
    with pytest.raises(DataError, match=r"cannot read '.*x\.tif'") as info:
        load_folder(tmp_path, 2)
    assert "\n" not in str(info.value) and said in str(info.value)
    assert capfd.readouterr().err == ""  # tifffile's log line is not printed beside it
