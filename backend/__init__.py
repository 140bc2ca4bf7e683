"""Segment Anything model server: network, inference, serving and training.

This package must stay light to import: ``backend.client`` and
``backend.formats`` are used by thin clients without torch.
"""

__version__ = "0.1.0"
