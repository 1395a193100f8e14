"""A job reports its own peak memory, not the largest of every job its process ran before.

A worker's pool process trains job after job; these tests play that process: it first holds and
frees a large block (the earlier, bigger job), then trains a small job.
"""

from __future__ import annotations

import resource

import torch

from app.adaptation import TaskData, adapt
from app.adaptation.memory import MemoryWindow
from tests.adaptation.helpers import job
from tests.utils.data import sentiment

MB = 1024 * 1024
BLOCK = 400 * MB


def lifetime_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def hold_and_free(size: int) -> None:
    """Make `size` bytes resident (every page written), then give them back."""
    block = torch.ones(size // 4, dtype=torch.float32)
    assert block.sum().item() == size // 4
    del block


def test_a_window_sees_a_peak_inside_it_and_none_from_before():
    hold_and_free(BLOCK)
    before = lifetime_peak()
    window = MemoryWindow(torch.device("cpu"))
    assert window.since_start
    start = resident()
    assert window.peak() < before - BLOCK // 2  # the block freed before the window is not counted
    hold_and_free(BLOCK)
    # The block held inside it is (Linux counts resident pages in per-CPU batches: a few pages off).
    assert window.peak() >= start + BLOCK - 4 * MB


def test_a_small_job_after_a_large_one_reports_its_own_peak(tiny_model_dir):
    hold_and_free(BLOCK)
    earlier_jobs_peak = lifetime_peak()
    data = TaskData(sentiment(64, seed=1), sentiment(16, seed=2))
    result = adapt(job(training={"epochs": 1}), data, tiny_model_dir)
    # The tiny job needs far less than the block on top of the process: it is not charged for it.
    assert result.peak_memory_bytes < earlier_jobs_peak - BLOCK // 2
    # Still the whole process's resident memory, torch included, not just what the job added.
    assert result.peak_memory_bytes >= 100 * MB
