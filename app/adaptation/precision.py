"""Mixed precision: bf16 autocast where the hardware computes it natively, fp32 elsewhere.

Weights, optimizer state and the loss stay fp32; only the matrix products inside the autocast region
run in bf16. On CPUs with AVX-512 BF16 or AMX a bf16 matrix product runs about twice as fast as fp32
(oneDNN); on CUDA, bf16 autocast plus TF32 for the remaining fp32 products.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # oneDNN's own check: AVX-512 BF16 (or AMX) present, so bf16 kernels are not emulated.
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve(precision: Precision, device: torch.device) -> torch.dtype:
    """The compute dtype a job runs with: `auto` is bf16 where it is native, else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16" or bf16_is_native(device):
        return torch.bfloat16
    return torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def allow_tf32() -> None:
    """fp32 matrix products on Ampere+ GPUs use TF32 (10-bit mantissa inputs, fp32 accumulation)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
