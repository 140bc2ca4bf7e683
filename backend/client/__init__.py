"""Clients of the model server; importing this package never imports torch."""

from backend.api.answers import ImageInfo, ObjectMasks
from backend.client.base import SamClientBase

__all__ = ["ImageInfo", "ObjectMasks", "SamClientBase"]
