"""The notebook widget: ``SamWidget(image, client=...)``.

Importing this package imports neither torch nor ipycanvas; ``SamWidget``
loads ipycanvas and ipyevents when it is built.
"""

from widget.sam_widget import SamWidget
from widget.state import AcceptedMask, Box, Candidate, Point

__all__ = ["AcceptedMask", "Box", "Candidate", "Point", "SamWidget"]
