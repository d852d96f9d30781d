"""Training and validation data, as BiaPy's DATA.VAL chooses them.

``data.val_path`` empty (BiaPy DATA.VAL.FROM_TRAIN True): validation is held out of the training
images (``data.val_fraction``, DATA.VAL.SPLIT_TRAIN). Set (FROM_TRAIN False, DATA.VAL.PATH): the
images of that folder are the validation data, and the training images are all trained on.
"""

from __future__ import annotations

from napari_ssl.config import DataConfig
from napari_ssl.data.folders import VAL_KEY, list_images, load_image, resolve_dataset
from napari_ssl.data.images import DataError, Image
from napari_ssl.data.sampling import Region, split_regions, whole_regions


def split_train_val(
    data: DataConfig, images: list[Image], patch: tuple[int, ...]
) -> tuple[list[Image], list[Region], list[Region]]:
    """All images (the training ones first) with their training and validation regions."""
    if not data.val_path:
        return images, *split_regions(images, data.val_fraction, patch)
    val = load_val_folder(data, images[0].channels)
    return images + val, whole_regions(images), whole_regions(val, first=len(images))


def load_val_folder(data: DataConfig, channels: int) -> list[Image]:
    """The images of ``data.val_path``, each checked to be like the training images."""
    folder = resolve_dataset(data.val_path, "val")
    images = []
    for path in list_images(folder, VAL_KEY):
        try:
            # several channels: found by count (first or last axis); one: as the file says
            image = load_image(path, data.ndim, channels if channels > 1 else None)
        except DataError as err:
            raise DataError(f"validation image in {VAL_KEY} '{folder}': {err}") from err
        if image.channels != channels:
            raise DataError(
                f"validation image '{path.name}' in {VAL_KEY} '{folder}' reads as "
                f"{image.channels} channel(s) of {image.spatial_shape} but the training images "
                f"have {channels}: validation images need the training images' channels and "
                f"dimensionality (a {data.ndim + 1}D stack read as {data.ndim}D has many "
                "channels: check PROBLEM.NDIM)."
            )
        images.append(image)
    return images
