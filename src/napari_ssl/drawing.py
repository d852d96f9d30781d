"""One lock for all matplotlib drawing in the process.

matplotlib is not thread-safe: in napari the engine's worker thread writes charts while the
Train dock renders its loss plot in a thread of its own. Every figure is built and drawn while
holding :data:`MATPLOTLIB_LOCK` (a draw takes tens of milliseconds, so nobody waits long).
"""

from __future__ import annotations

import threading

MATPLOTLIB_LOCK = threading.RLock()
