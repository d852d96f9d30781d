"""napari dock widgets (Qt). Nothing here imports torch at import time."""
