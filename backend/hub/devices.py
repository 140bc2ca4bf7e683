"""Device names: ``"auto"`` and explicit devices, checked against what this machine has."""

from __future__ import annotations

import torch

from backend.api.errors import InvalidInput


def pick_device(name: str = "auto") -> str:
    """Resolve a device name; ``"auto"`` picks cuda, then mps, then cpu.

    Raises:
        InvalidInput: Malformed name, or an accelerator that is not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidInput(f"invalid device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"device {name!r} asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInput(f"device {name!r} asked for, but MPS is not available here; use 'auto' or 'cpu'")
    return name
