"""One GPU per xdist worker: an index into the GPUs the run was given, never one outside them."""

from __future__ import annotations

from harness.entry.devices import OUTER, pin_worker_gpu, worker_gpu


def test_workers_index_into_the_outer_list_and_wrap():
    assert [worker_gpu(f"gw{i}", "4,5", 0) for i in range(3)] == ["4", "5", "4"]
    assert [worker_gpu(f"gw{i}", None, 2) for i in range(3)] == ["0", "1", "0"]


def test_nothing_changes_without_gpus_or_outside_xdist():
    assert worker_gpu("gw0", None, 0) is None
    assert worker_gpu("gw0", "", 4) is None  # the run was given no GPU: keep it that way
    assert worker_gpu(None, "0,1", 0) is None and worker_gpu("master", "0,1", 0) is None
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert pin_worker_gpu(env) is None and env == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_pinning_keeps_the_outer_list():
    env = {"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": "6,7"}
    assert pin_worker_gpu(env) == "7"
    assert env["CUDA_VISIBLE_DEVICES"] == "7" and env[OUTER] == "6,7"
    assert pin_worker_gpu(env) == "7"  # pinning again reads the outer list, not its own choice
