"""The model server's API types, shared by the HTTP schemas, both clients, the service and the widget.

Torch-free: a Label Studio plugin or a notebook talking to a remote server
imports these without torch. ``backend.client`` and ``backend.serving`` both
import from here and never from each other.
"""

from backend.api.answers import ImageInfo, ObjectMasks, empty_automask_note
from backend.api.errors import (
    InvalidImage,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SamError,
    SamServerError,
    ServiceUnavailable,
)
from backend.api.priority import Priority, parse_priority

__all__ = [
    "ImageInfo",
    "InvalidImage",
    "InvalidInput",
    "NotFound",
    "ObjectMasks",
    "PayloadTooLarge",
    "Priority",
    "SamError",
    "SamServerError",
    "ServiceUnavailable",
    "empty_automask_note",
    "parse_priority",
]
