"""Running scripts under the BiaPy 3.7.1 peer's interpreter (it has its own torch)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path


def run_biapy(python: Path, script: str, *args: str, timeout: float = 300) -> str:
    """Run ``script`` with BiaPy's interpreter (which has its own torch); return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"BiaPy script failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
