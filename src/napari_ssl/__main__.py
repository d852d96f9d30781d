"""``python -m napari_ssl`` (also under ``torchrun``) runs the CLI."""

from napari_ssl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
