"""The folders the docks write into, checked when the user acts, not when a worker fails."""

from __future__ import annotations

import os
from pathlib import Path

from napari_ssl.data.images import DataError


def output_folder(text: str, what: str) -> Path:
    """The folder ``text`` (``~`` expanded), created if missing, or a clear :class:`DataError`
    (``what``: its field, "result folder") when it is relative, a file, or cannot be written."""
    text = text.strip()
    if not text:
        raise DataError(f"no {what}: choose where the files go.")
    folder = Path(text).expanduser()
    if not folder.is_absolute():  # napari's working folder is nowhere the user can see
        raise DataError(
            f"the {what} '{text}' is a relative path: give a full path, such as "
            f"'{Path.home() / folder}'."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(
            f"the {what} '{folder}' is, or lies inside, a file: choose a folder."
        ) from None
    except OSError as err:
        raise DataError(
            f"the {what} '{folder}' cannot be created ({err.strerror or err}): choose a folder "
            "you can write to."
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"the {what} '{folder}' is not writable: choose a folder you can write to.")
    return folder
