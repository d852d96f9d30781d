"""Engine messages in the docks' words: a config key becomes the field that sets it.

The engine names keys as a config file does (``data.patch_size (BiaPy DATA.PATCH_SIZE)``); in
the docks the user sees "Patch size". Keys no dock shows (model sizes, ...) stay as they are:
they are set with "Load config…".
"""

from __future__ import annotations

import re

FIELDS = {  # (our key, BiaPy's key) -> the label of the field that sets it
    ("data.patch_size", "DATA.PATCH_SIZE"): "Patch size",
    ("model.vit_token_size", "MODEL.VIT_TOKEN_SIZE"): "Token size",
    ("pretext.noise", "PROBLEM.SELF_SUPERVISED.NOISE"): "Noise",
    ("pretext.resizing_factor", "PROBLEM.SELF_SUPERVISED.RESIZING_FACTOR"): "Resizing factor",
    ("pretext.mask_ratio", "MODEL.MAE_MASK_RATIO"): "Mask ratio",
    ("data.ndim", "PROBLEM.NDIM"): "Dimensions",
    ("train.epochs", "TRAIN.EPOCHS"): "Epochs",
    ("train.batch_size", "TRAIN.BATCH_SIZE"): "Batch size",
    ("train.lr", "TRAIN.LR"): "Learning rate",
    ("data.val_fraction", "DATA.VAL.SPLIT_TRAIN"): "Validation fraction",
    ("data.val_path", "DATA.VAL.PATH"): "Validation folder",
    ("data.train_path", "DATA.TRAIN.PATH"): "dataset folder",
    ("data.normalization_mean", "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL"): "Fixed mean",
    ("data.normalization_std", "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL"): "Fixed std",
}
_KEY = "|".join(re.escape(biapy) for _, biapy in FIELDS)
_ALSO = re.compile(rf" \((?:BiaPy )?(?:{_KEY})(?:, (?:{_KEY}))*\)")  # "(BiaPy A.B, C.D)"


def in_dock_words(message: str) -> str:
    """``message`` with the keys of :data:`FIELDS` named by their fields, in quotes."""
    for (ours, biapy), label in FIELDS.items():  # "data.patch_size (BiaPy DATA.PATCH_SIZE)"
        pattern = rf"{re.escape(ours)} \((?:BiaPy )?{re.escape(biapy)}\)"
        message = re.sub(pattern, f"'{label}'", message)
    message = _ALSO.sub("", message)  # a BiaPy name beside words that say it already
    for (ours, biapy), label in FIELDS.items():
        for key in (ours, biapy):
            message = re.sub(rf"(?:BiaPy )?(?<![\w.]){re.escape(key)}(?!\w)", f"'{label}'", message)
    return message
