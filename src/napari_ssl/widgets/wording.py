"""Engine messages in the docks' words: a config key becomes the field that sets it.

The engine names keys as a config file does (``data.patch_size (BiaPy DATA.PATCH_SIZE)``); in
the docks the user sees "Patch size". A few keys no dock shows are said in words, with where
they are set (:data:`LOADED`: "the early-stopping patience (20, set with Load config…)"); the
others (model sizes, ...) stay as they are: they are set with "Load config…" too.
"""

from __future__ import annotations

import re
from functools import partial

from qtpy.QtWidgets import QFormLayout, QWidget

from napari_ssl.data.images import CHANNELS_SET_BY

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
    ("train.lr_schedule", "TRAIN.LR_SCHEDULER.NAME"): "Schedule",
    ("train.min_lr", "TRAIN.LR_SCHEDULER.MIN_LR"): "Minimum lr",
    ("train.warmup_epochs", "TRAIN.LR_SCHEDULER.WARMUP_COSINE_DECAY_EPOCHS"): "Warm-up epochs",
    ("train.cosine_decay_fraction", "TRAIN.LR_SCHEDULER.COSINE_DECAY_FRACTION"): "Decay fraction",
    ("train.plateau_factor", "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_FACTOR"): "Plateau factor",
    ("train.plateau_patience", "TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_PATIENCE"): "Plateau patience",
    ("data.val_fraction", "DATA.VAL.SPLIT_TRAIN"): "Validation fraction",
    ("data.val_path", "DATA.VAL.PATH"): "Validation folder",
    ("data.train_path", "DATA.TRAIN.PATH"): "dataset folder",
    ("data.percentile_clip", "DATA.NORMALIZATION.PERC_CLIP"): "Clip percentiles",
    ("data.normalization_mean", "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.MEAN_VAL"): "Fixed mean",
    ("data.normalization_std", "DATA.NORMALIZATION.ZERO_MEAN_UNIT_VAR.STD_VAL"): "Fixed std",
    ("train.patience", "TRAIN.PATIENCE"): "the early-stopping patience",
    ("system.num_workers", "SYSTEM.NUM_WORKERS"): "the reader threads",
    ("model.feature_maps", "MODEL.FEATURE_MAPS"): "the U-Net's feature maps",
    ("model.z_down", "MODEL.Z_DOWN"): "its Z downsampling",
}
LOADED = {
    "train.patience",
    "system.num_workers",
    "model.feature_maps",
    "model.z_down",
}  # no dock shows these: said in words, set with "Load config…"
SET_WITH = "set with Load config…"
_KEY = "|".join(re.escape(biapy) for _, biapy in FIELDS)
_VALUE = r"(?![A-Z][A-Z0-9_]*\.)([^()]+)"  # "(BiaPy TRAIN.PATIENCE, 20)": 20, not another key
_ALSO = re.compile(rf" \((?:BiaPy )?(?:{_KEY})(?:, (?:{_KEY}))*\)")  # "(BiaPy A.B, C.D)"


def in_dock_words(message: str) -> str:
    """``message`` with the keys of :data:`FIELDS` named by their fields, in quotes (those of
    :data:`LOADED` in words, with their value when the message gives it and where to set them).
    """
    message = message.replace(CHANNELS_SET_BY, "the 'Channel axis' chosen")  # in the docks
    for (ours, biapy), label in FIELDS.items():  # "data.patch_size (BiaPy DATA.PATCH_SIZE)"
        pattern = rf"{re.escape(ours)} \((?:BiaPy )?{re.escape(biapy)}(?:, {_VALUE})?\)"
        message = re.sub(pattern, partial(_named, ours, label), message)
    message = _ALSO.sub("", message)  # a BiaPy name beside words that say it already
    for (ours, biapy), label in FIELDS.items():
        for key in (ours, biapy):
            pattern = rf"(?:BiaPy )?(?<![\w.]){re.escape(key)}(?!\w)"
            message = re.sub(pattern, partial(_named, ours, label), message)
    return message


def _named(key: str, label: str, match: re.Match[str]) -> str:
    """A key in the docks' words: "'Epochs' (12)", "the early-stopping patience (20, set with
    Load config…)" (the value: what followed the key's names in parentheses)."""
    value = match.groups()[0] if match.groups() else None
    if key in LOADED:
        return f"{label} ({', '.join(filter(None, (value, SET_WITH)))})"
    return f"'{label}' ({value})" if value else f"'{label}'"


TIPS = {  # the tooltip of a form row, by its label
    "Dimensions": "2D images, or 3D volumes (Z, Y, X); detected from the layer, change it if wrong",
    "Channel axis": "The layer's axis that holds channels (none: one channel); RGB is 3 channels",
    "Mask type": "grid: a fixed checkerboard of tokens, half of them hidden; random: a new random "
    "set of tokens hidden in every patch (Mask ratio of them)",
    "Mask ratio": "The fraction of tokens hidden in random masking (MAE: 0.75)",
    "Token size": "The side of the square (cubic in 3D) ViT token, in pixels: the patch must be a "
    "multiple of it",
    "Patch size (Y, X)": "The side of the square training patches, in pixels: more context, "
    "more memory",
    "Patch size (Z)": "The depth of the 3D training patches, in slices",
    "Epochs": "Passes over the training images (each one covers them with patches)",
    "Batch size": "Patches per step. A larger batch is faster on a GPU: raise the learning rate "
    "with it (lr = 1e-4 × batch / 6 kept BiaPy's quality)",
    "Schedule": "How the learning rate changes over the run (BiaPy TRAIN.LR_SCHEDULER.NAME): "
    "warmupcosine, reduceonplateau, onecycle or warmupreduceonplateau; constant: none",
    "Minimum lr": "The lowest learning rate: where the cosine decay ends, and the floor of reduce "
    "on plateau (BiaPy TRAIN.LR_SCHEDULER.MIN_LR)",
    "Warm-up epochs": "Epochs of linear ramp from 0 to the learning rate; none: it starts at "
    "the learning rate (BiaPy TRAIN.LR_SCHEDULER.WARMUP_COSINE_DECAY_EPOCHS)",
    "Decay fraction": "The cosine decay covers this last part of the epochs, the learning rate "
    "held before it; after warm-up: the decay starts right after the warm-up (BiaPy "
    "TRAIN.LR_SCHEDULER.COSINE_DECAY_FRACTION)",
    "Plateau factor": "The learning rate is multiplied by this when the validation loss stops "
    "improving (BiaPy TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_FACTOR)",
    "Plateau patience": "How many epochs in a row without a better validation loss are waited "
    "out: the learning rate is reduced at the next one (patience 3: at the 4th); less than the "
    "early-stopping patience (BiaPy TRAIN.LR_SCHEDULER.REDUCEONPLATEAU_PATIENCE)",
    "Start as": "new training: fresh weights; continue: a stopped run from its last checkpoint "
    "(optimizer and epoch too); fine-tune: the weights of a checkpoint, a new run",
    "Tile overlap": "The fraction of each tile shared with its neighbours when stitching: more "
    "overlap, smoother seams, slower (crappify; masking tiles never overlap: each token is "
    "masked and reconstructed once)",
    "Task": "crappify: restore the image from a noisy, down- and up-sampled copy (a U-Net); "
    "masking: fill in hidden patches (a masked autoencoder, ViT)",
    "Model": "The network to pretrain: U-Nets for crappify, mae (a vision transformer) for masking",
    "ViT preset": "The masked autoencoder's size: tiny trains fast on a CPU; base is BiaPy's "
    "ViT-B (111 M parameters, a GPU)",
    "Augmentation": "Random flips and 90° rotations of the training patches (and Z flips in 3D)",
    "Device": "Where to train: auto takes a GPU when there is one",
    "Mixed precision": "bf16 or fp16 arithmetic where it is safe: faster on GPUs",
    "Result folder": "Where each run writes its checkpoints, charts and config "
    "(<folder>/<run name>/…, as BiaPy)",
    "Run name": "The name of the run's folder and files; runs of one name are numbered",
    "Checkpoint": "A .pth (or .safetensors) checkpoint: the run just trained fills it in",
    "Input layers": "The layers to reconstruct (Ctrl/Shift-click for several); degraded copies "
    "are listed too",
    "Folder": "Where the exported files go",
    "Name": "The exported files' name: <name>.pth, .safetensors, .yaml",
}


def explain(dock: QWidget) -> None:
    """Give each form row of ``dock`` with a label in :data:`TIPS` its tooltip (label and field;
    a field's own tooltip is kept)."""
    for form in dock.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            text = label.widget().text() if label is not None and label.widget() else ""
            if text not in TIPS:
                continue
            label.widget().setToolTip(TIPS[text])
            widget = field.widget() if field is not None else None
            if widget is not None and not widget.toolTip():
                widget.setToolTip(TIPS[text])
