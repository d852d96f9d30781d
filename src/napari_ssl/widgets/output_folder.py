"""The folders the docks write into, checked when the user acts, not when a worker fails."""

from __future__ import annotations

import tempfile
from pathlib import Path

from napari_ssl.data.images import DataError


def output_folder(text: str, what: str) -> Path:
    """The folder ``text`` (``~`` expanded), checked writable but not created, or a clear
    :class:`DataError` (``what``: its field, "result folder") when it is relative, a file, or
    cannot be written (a trial folder is made and removed in its nearest existing folder)."""
    text = text.strip()
    if not text:
        raise DataError(f"no {what}: choose where the files go.")
    folder = Path(text).expanduser()
    if not folder.is_absolute():  # napari's working folder is nowhere the user can see
        raise DataError(
            f"the {what} '{text}' is a relative path: give a full path, such as "
            f"'{Path.home() / folder}'."
        )
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise DataError(f"the {what} '{folder}' is, or lies inside, a file: choose a folder.")
    try:
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as err:
        raise DataError(
            f"the {what} '{folder}' cannot be written ({err.strerror or err}): choose a folder "
            "you can write to."
        ) from None
    return folder
