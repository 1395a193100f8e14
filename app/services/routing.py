"""Which Celery queue a job goes to, and which queues a worker takes jobs from.

A job's route (`compute.route`) is `cpu`, `gpu` or a GPU class the operator names (THAW_GPU_CLASSES).
Each route is a queue of the broker and a worker subscribes to the routes it serves (`thaw worker
--queues gpu`): Celery's own routing places the jobs, there is no scheduler of ours.

A job of N > 1 GPUs must see all N devices from one training process tree, so it waits in a queue of
its own, `<route>.xN`, which only workers whose pool processes each hold N GPUs subscribe to
(`thaw worker --queues gpu --gpus 0,1 --concurrency 1`: one process that sees both). A worker thus
never takes a job larger than the devices it pins, and never idles half its GPUs on a smaller one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module; it need not build the spec models to start a worker
    from app.schemas.spec import Compute

CPU = "cpu"
GPU = "gpu"
BUILT_IN_ROUTES = (CPU, GPU)


def queue_name(settings_queue: str, route: str, gpus: int = 1) -> str:
    """The Celery queue of a route. `cpu` is the base queue itself (THAW_QUEUE), the one every worker
    took jobs from before routes existed; any other route is a queue under it, with the GPU count
    when a job needs more than one: thaw, thaw.gpu, thaw.a100, thaw.gpu.x2."""
    if route == CPU:
        return settings_queue
    name = f"{settings_queue}.{route}"
    return f"{name}.x{gpus}" if gpus > 1 else name


def job_queue(settings_queue: str, compute: Compute) -> str:
    """The queue a job with these compute needs waits in."""
    return queue_name(settings_queue, compute.route, compute.gpus)


def every_queue(settings_queue: str, gpu_classes: list[str], max_gpus: int) -> list[str]:
    """Every queue a job can be sent to: the cpu route's, and each GPU route's for 1 to `max_gpus`
    GPUs (thaw, thaw.gpu, thaw.gpu.x2, ..., thaw.a100, thaw.a100.x2, ...)."""
    gpu_routes = [GPU, *gpu_classes]
    return [settings_queue] + [
        queue_name(settings_queue, route, gpus) for route in gpu_routes for gpus in range(1, max_gpus + 1)
    ]


def unknown_routes(routes: list[str], gpu_classes: list[str]) -> list[str]:
    """The routes that are neither `cpu`, `gpu` nor one of the operator's GPU classes."""
    return [route for route in routes if route not in BUILT_IN_ROUTES and route not in gpu_classes]


def gpu_slices(gpus: list[int], processes: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each pool process: the worker's GPUs cut into `processes` equal, disjoint
    slices in order ([0, 1, 2, 3] by 2 gives "0,1" and "2,3")."""
    if processes < 1 or not gpus or len(gpus) % processes:
        raise ValueError(f"{len(gpus)} GPUs cannot be shared equally by {processes} training processes")
    size = len(gpus) // processes
    return [",".join(str(gpu) for gpu in gpus[start : start + size]) for start in range(0, len(gpus), size)]


@dataclass(frozen=True)
class WorkerPlan:
    """What `thaw worker` starts: its pool processes, the GPUs each pins (CUDA_VISIBLE_DEVICES, none
    when the worker lists no GPUs), and the Celery queues it consumes."""

    concurrency: int
    gpus_per_process: int
    devices: list[str]
    queues: list[str]


def plan_worker(
    settings_queue: str, routes: list[str], gpus: list[int], concurrency: int | None, gpu_classes: list[str]
) -> WorkerPlan:
    """Without GPUs: `concurrency` processes (default 1), each taking jobs of one GPU on a GPU route
    (it sees every device; pin it with --gpus). With GPUs: one process per GPU by default, or
    `concurrency` processes sharing them equally; a process holding N GPUs takes the N-GPU jobs of
    its GPU routes. CPU jobs go to any process of a worker that lists `cpu`."""
    if not routes:
        raise ValueError("a worker needs at least one queue (cpu, gpu or a GPU class)")
    unknown = unknown_routes(routes, gpu_classes)
    if unknown:
        known = ", ".join([*BUILT_IN_ROUTES, *gpu_classes])
        raise ValueError(f"unknown queue {', '.join(map(repr, unknown))}: the queues are {known} (THAW_GPU_CLASSES)")
    if len(set(gpus)) != len(gpus) or any(gpu < 0 for gpu in gpus):
        raise ValueError(f"--gpus must list distinct device numbers, not {gpus}")
    if concurrency is not None and concurrency < 1:
        raise ValueError("--concurrency must be 1 or more")
    processes = concurrency or len(gpus) or 1
    devices = gpu_slices(gpus, processes) if gpus else []  # raises when they do not divide equally
    per_process = len(gpus) // processes if gpus else 1
    queues = [queue_name(settings_queue, route, 1 if route == CPU else per_process) for route in routes]
    return WorkerPlan(processes, per_process, devices, list(dict.fromkeys(queues)))
