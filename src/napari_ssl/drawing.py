"""One lock for all matplotlib drawing in the process, and the epoch axis of every chart.

matplotlib is not thread-safe: in napari the engine's worker thread writes charts while the
Train dock renders its loss plot in a thread of its own. Every figure is built and drawn while
holding :data:`MATPLOTLIB_LOCK` (a draw takes tens of milliseconds, so nobody waits long).
"""

from __future__ import annotations

import threading
from typing import Any

MATPLOTLIB_LOCK = threading.RLock()


def integer_epochs(ax: Any) -> None:
    """Whole epochs only on the x axis of ``ax`` (not 0.2, 0.4, … for a run of two epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=1))
