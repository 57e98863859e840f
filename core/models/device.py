"""Which device and precision the models run on."""

from __future__ import annotations

from core.errors import InputError


def resolve_device(name: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not available is an
    InputError rather than a silent fallback. (The device setting and its environment variable
    choose the request's device: storage.settings.)"""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name.split(":")[0] not in available:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    if not available[name.split(":")[0]]:
        raise InputError(f"device {name!r} is not available here: use auto or cpu")
    return name


def torch_dtype(device: str):
    """fp16 on CUDA (half the memory, tensor cores); fp32 elsewhere (CPU has no fast fp16)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32
