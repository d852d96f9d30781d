"""napari-ssl: self-supervised pretraining of image-restoration backbones (napari + CLI)."""

__version__ = "0.1.0"
