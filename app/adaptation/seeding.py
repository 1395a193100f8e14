"""Every random generator a job draws from (data order, initialisation, dropout), seeded at once."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def part_seed(seed: int, part: int) -> int:
    """The seed of part `part` of a job of several (stages, then the main task): each part starts
    from a state of its own, so a resumed job that skips a finished part draws what an unbroken one
    would."""
    return (seed * 1_000_003 + part) % 2**32


def step_generator(seed: int, step: int) -> torch.Generator:
    """Randomness of one step's extra work (masking, perturbation), the same after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)
