"""Clients of the model server; importing this package never imports torch."""

from backend.client.base import ImageInfo, ObjectMasks, SamClientBase

__all__ = ["ImageInfo", "ObjectMasks", "SamClientBase"]
