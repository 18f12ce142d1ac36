"""One GPU per pytest-xdist worker.

Worker gwN sees the N-th entry (wrapping) of the GPUs the whole run was given: the outer
CUDA_VISIBLE_DEVICES list when set (an index into it, so a run confined to GPUs "4,5" never
touches GPU 0), else every GPU nvidia-smi lists. The outer list is kept in
SAE_CLAIMS_OUTER_CUDA_DEVICES, so it is never lost. Nothing changes without a GPU or outside xdist.
CUDA reads CUDA_VISIBLE_DEVICES when it initialises, so this runs in pytest_configure, before any
model loads.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import MutableMapping

OUTER = "SAE_CLAIMS_OUTER_CUDA_DEVICES"


def worker_gpu(worker: str | None, outer: str | None, n_listed: int) -> str | None:
    """The device id worker `worker` (gw0, gw1, ...) should see, or None to leave things alone."""
    if not worker or not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    devices = [d.strip() for d in outer.split(",") if d.strip()] if outer is not None else \
        [str(i) for i in range(n_listed)]
    if not devices:
        return None
    return devices[int(worker[2:]) % len(devices)]


def listed_gpus() -> int:
    """GPUs nvidia-smi lists (0 without a driver); asking torch would initialise CUDA too early."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def pin_worker_gpu(environ: MutableMapping[str, str]) -> str | None:
    worker = environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return None
    outer = environ.get(OUTER, environ.get("CUDA_VISIBLE_DEVICES"))
    chosen = worker_gpu(worker, outer, 0 if outer is not None else listed_gpus())
    if chosen is None:
        return None
    if outer is not None:
        environ[OUTER] = outer
    environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen
