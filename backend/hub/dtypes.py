"""The one dtype parser: a torch dtype or its name -> a floating-point torch dtype, or a clear error."""

from __future__ import annotations

import torch

from backend.api.errors import InvalidInput


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float16`` or ``"float16"`` (any floating-point torch dtype) -> that torch dtype.

    Raises:
        InvalidInput: Not a torch dtype nor the name of one, or not floating-point.
    """
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise InvalidInput(
            f"dtype must be a floating-point torch dtype such as 'float32', 'float16', 'bfloat16'; got {dtype!r}"
        )
    return value
