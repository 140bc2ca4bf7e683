"""The one dtype parser: a torch dtype or its name -> a dtype the networks compute in, or a clear error."""

from __future__ import annotations

import torch

from backend.api.errors import InvalidInput

MODEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
"""The floating-point dtypes the networks run in (the float8 ones store weights but have no convolutions)."""


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float16`` or ``"float16"`` (any of :data:`MODEL_DTYPES`, or an alias torch
    gives one, e.g. ``"half"``) -> that torch dtype.

    Raises:
        InvalidInput: Not a torch dtype nor the name of one, or not one the networks run in.
    """
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if value not in MODEL_DTYPES:
        names = ", ".join(repr(str(d).removeprefix("torch.")) for d in MODEL_DTYPES)
        raise InvalidInput(f"dtype must be one of {names}; got {dtype!r}")
    return value  # type: ignore[return-value]
