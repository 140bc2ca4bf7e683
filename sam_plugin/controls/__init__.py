"""One small converter per Label Studio control tag.

Prompt tags (Label Studio result -> pixel prompt): ``keypoint_labels``,
``rectangle_labels``, ``text_area``. Output tags (mask -> Label Studio
result): ``brush_labels``, ``polygon_labels``.
"""
