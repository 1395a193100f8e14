"""Training in several processes of one node with PyTorch's DistributedDataParallel (DDP).

A launcher (torchrun) starts one process per GPU, or several on a CPU; each joins the process group
(`join_process_group`) and calls `adapt` as a lone process would. The engine sees the group through
`current_world()` and then, with more than one process:

- The training forward pass runs through DDP (`data_parallel`), which averages every trainable
  parameter's gradient over the ranks during backward. DDP broadcasts rank 0's weights when it is
  built and every rank then applies the same averaged gradient, so the replicas stay identical
  (https://pytorch.org/docs/stable/notes/ddp.html). Evaluation, checkpoints and the saved model use
  the unwrapped module.
- Every rank draws the same shuffled batch order (the same seeded `random.Random`) and trains on
  its share of it (`shard`): batch i when i % world == rank. Every rank takes the same number of
  steps, `batches // world` per epoch; the few batches past the last whole round are not trained in
  that epoch (the next epoch's shuffle leaves out others), as `DistributedSampler(drop_last=True)`
  does. `training.batch_size` is per process: a step trains on world x batch_size examples, and the
  lr schedule counts the steps of one rank.
- Rank 0 alone reports progress and events, writes checkpoints, evaluates the validation set (and
  hands its metrics to the others, `from_main`, so that every rank keeps the same best epoch and
  stops early at the same epoch), tests the kept model and returns the result to save. The others
  train silently and return a replica.
- Stop and pause requests reach rank 0 (its callbacks, on a clock); every `AGREE_EVERY_STEPS` steps
  rank 0 broadcasts them (`Agreement`), so all ranks stop, or pause, at the same step: no rank is
  left waiting in an all-reduce that the others never join.
- Dropout is seeded per step and rank (`seed_step`): the ranks draw different masks, and a run
  resumed from rank 0's checkpoint draws on every rank what the unbroken run drew.

Some job options do not combine with DDP (app/schemas/spec.py `undistributable_options`): a
trainable set that changes during the run (unfreezing schedules), steps whose forward pass differs
(auxiliary tasks, slices, consistency, distillation), and jobs of several runs (stages, ensembles).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from app.adaptation.callbacks import Callbacks, SilentCallbacks
from app.schemas.spec import JobSpec, undistributable_options

T = TypeVar("T")
Item = TypeVar("Item")

AGREE_EVERY_STEPS = 5  # how often rank 0's stop and pause requests are broadcast


class NotDistributable(ValueError):
    """The job asks for something that does not train with DistributedDataParallel."""


class TooFewBatches(ValueError):
    """Fewer training batches than processes: some rank would have nothing to train on."""


@dataclass(frozen=True)
class World:
    """The training processes of a job, as this process sees them; one process by default."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the GPU of this process, on its node
    backend: str | None = None  # gloo (CPU), nccl (GPU); None without a process group

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)), str(dist.get_backend()))


def join_process_group() -> World:
    """Join the group that torchrun describes in RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
    MASTER_ADDR and MASTER_PORT: NCCL between GPUs, each process on GPU LOCAL_RANK; gloo between CPU
    processes, and where the node has fewer GPUs than processes (NCCL needs one each; gloo shares)."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    backend = "gloo"
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        torch.cuda.set_device(local_rank % gpus)  # torch.device("cuda") is this process's GPU from now on
        backend = "nccl" if gpus >= local_size else "gloo"
    dist.init_process_group(backend=backend)
    return current_world()


def leave_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_distributable(spec: JobSpec, world: World) -> None:
    """The engine's own guard: the API refuses such specs at submission already."""
    refused = undistributable_options(spec)
    if world.distributed and refused:
        raise NotDistributable(
            f"{', '.join(refused)} cannot train in {world.size} processes (DistributedDataParallel); "
            "train this job with one process"
        )


# ---- data: one shuffled order, a share of it per rank -------------------------------------------


def steps_per_epoch(batches: int, world: World) -> int:
    """Steps each rank takes per epoch: the same on every rank (each step is an all-reduce that
    every rank must join), so the batches left after an equal share each wait for the next epoch."""
    steps = batches // world.size
    if steps == 0:
        raise TooFewBatches(
            f"the training data makes {batches} batches, fewer than the {world.size} training processes: "
            "use fewer processes or a smaller training.batch_size"
        )
    return steps


def left_out(batches: int, world: World) -> int:
    """Batches of each epoch that no rank trains on (see `steps_per_epoch`)."""
    return batches - steps_per_epoch(batches, world) * world.size


def shard(order: Iterable[Item], world: World, steps: int) -> Iterator[Item]:
    """This rank's batches of an epoch: of the order every rank draws alike, batch i when
    i % world.size == rank, `steps` of them. One process takes the first `steps` batches."""
    return islice(order, world.rank, world.rank + steps * world.size, world.size)


# ---- the forward pass that DDP synchronises -------------------------------------------------------


class ForwardModule(nn.Module):
    """The trainer's forward pass as a module that holds the model, for DDP to wrap. DDP prepares
    its gradient all-reduce in its own `forward` (without it, backward syncs nothing), while the
    trainer computes a step with the model's parts (pooled vectors, the head, a frozen-layer cache);
    this module runs that computation inside DDP's forward."""

    def __init__(self, model: nn.Module, forward: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model  # registered: DDP reduces the gradients of its trainable parameters
        self.compute = forward

    def forward(self, *inputs: Any) -> Any:
        return self.compute(*inputs)


def data_parallel(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP over `module`'s trainable parameters (requires_grad at this moment; frozen ones are left
    out, so feature extraction, adapters and LoRA reduce only what trains).

    static_graph=True: the supported jobs train the same parameters, each reached the same way, at
    every step. It lets DDP reduce parameters that a step reaches outside the forward pass (a
    regularizer's penalty on the weights), which find_unused_parameters=True would mark ready too
    early (DDP docs, `static_graph`)."""
    if device.type != "cuda":
        return DistributedDataParallel(module, static_graph=True)  # CPU: no device_ids (DDP docs)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return DistributedDataParallel(module, device_ids=[index], output_device=index, static_graph=True)


# ---- rank 0 decides, every rank follows -----------------------------------------------------------


def main_only(callbacks: Callbacks, world: World) -> Callbacks:
    """Rank 0 reports; the other ranks train silently (their reports would repeat rank 0's)."""
    return callbacks if world.is_main else SilentCallbacks()


def from_main(world: World, compute: Callable[[], T]) -> T:
    """`compute()` run on rank 0 only, its value handed to every rank (one pickled broadcast)."""
    if not world.distributed:
        return compute()
    box = [compute() if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wait_for_every_rank(world: World) -> None:
    """Return once every rank has got here (a barrier)."""
    if world.distributed:
        dist.barrier()


def total_over_ranks(world: World, value: int, device: torch.device) -> int:
    """The sum of `value` over every rank: a collective, so every rank calls it once, at the same
    point of its run (NCCL reduces tensors on the GPU, gloo on the CPU)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device if world.backend == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return int(tensor.item())


class Agreement:
    """Stop and pause requests, which only rank 0 receives, made every rank's at the same steps."""

    def __init__(self, world: World, device: torch.device, every_steps: int = AGREE_EVERY_STEPS) -> None:
        self.world, self.device, self.every_steps = world, device, every_steps
        self.agreed = (False, False)

    def decide(self, step: int, stop: bool, pause: bool) -> tuple[bool, bool]:
        """(stop, pause) after `step` steps. One process acts on its requests at once; ranks act on
        rank 0's, as broadcast at the last step that was a multiple of `every_steps`."""
        if not self.world.distributed:
            return stop, pause
        if step % self.every_steps == 0:
            flags = torch.tensor([stop, pause], dtype=torch.uint8, device=self.device)
            dist.broadcast(flags, src=0)  # a collective: every rank reaches it at this same step
            self.agreed = (bool(flags[0]), bool(flags[1]))
        return self.agreed


def seed_step(seed: int, step: int, world: World) -> None:
    """Dropout's generator for one step of one rank (distributed runs only; one process keeps the
    generator that its checkpoints hold)."""
    if world.distributed:
        torch.manual_seed(((seed * 1_000_003 + step) * 1_009 + world.rank) % 2**63)
