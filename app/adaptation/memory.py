"""A job's peak memory, measured from the job's own start.

A worker's pool process trains job after job, so the process's lifetime peak (`ru_maxrss`,
`torch.cuda.max_memory_allocated`) is the largest job's so far, not this one's: a feature-extraction
job run after a fine-tuning job would report the fine-tuning job's memory. A window therefore starts
by resetting the peak: the CUDA allocator's statistics on a GPU; on a CPU, Linux's resident-set
high-water mark, which a process may reset for itself by writing 5 to /proc/self/clear_refs
(proc(5), Linux 4.0 and later; `ru_maxrss` follows it). Where that is refused, the window reports
the process's lifetime peak and `since_start` is False.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_RESIDENT_PEAK = "5"


class MemoryWindow:
    """Peak memory of this process on `device` from the moment the window is made."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.since_start = self._reset()
        if not self.since_start:
            log.warning("cannot reset the process's peak memory; jobs report its lifetime peak")

    def peak(self) -> int:
        """Bytes: allocated on the GPU, or resident on the CPU (torch and all the process holds)."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    def _reset(self) -> bool:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return True
        try:
            CLEAR_REFS.write_text(RESET_RESIDENT_PEAK)
        except OSError:  # not Linux, or a kernel or sandbox that refuses it
            return False
        return True
