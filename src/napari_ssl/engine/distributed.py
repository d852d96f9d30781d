"""torchrun / DistributedDataParallel support: rank discovery and process-group setup."""

from __future__ import annotations

import os


def local_rank() -> int | None:
    """This process's local rank under torchrun, or None when not launched by it."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
