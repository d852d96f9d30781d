"""napari-ssl: self-supervised pretraining of image-restoration backbones, in napari and headless."""

__version__ = "0.1.0"
