"""Device and precision choice shared by every stage."""

from __future__ import annotations

import contextlib
import functools

import torch

from canstyle.errors import CanstyleError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES and not name.startswith("cuda:"):
        raise CanstyleError(f"unknown device {name!r}: choose from {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CanstyleError("--device cuda was requested but CUDA is not available")
    if name == "mps" and not (torch.backends.mps.is_available()):
        raise CanstyleError("--device mps was requested but MPS is not available")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX).

    Without it bf16 is emulated and slower than fp32, so "auto" keeps fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype to use (float32 means no autocast)."""
    if name not in PRECISIONS:
        raise CanstyleError(f"unknown precision {name!r}: choose from {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32  # never default to fp16/bf16 where it would be emulated
    if name == "fp16" and device.type == "cpu":
        raise CanstyleError("fp16 is not supported on CPU; use --precision bf16 or fp32")
    return _DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[None]:
    """Autocast for ``dtype`` on ``device``, or a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]
