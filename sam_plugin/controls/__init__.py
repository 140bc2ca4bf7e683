"""One converter class per Label Studio control tag, registered in one list.

``base.py`` holds the contract (:class:`~sam_plugin.controls.base.ControlConverter`:
``matches``, ``to_prompt``, ``from_mask``), ``registry.py`` the list
(:data:`~sam_plugin.controls.registry.CONVERTERS`) and its lookups,
``prompt.py`` the pixel prompt the converters fill. Prompt tags (Label Studio
result -> pixel prompt part): ``keypoint_labels``, ``rectangle_labels``,
``text_area``. Output tags (mask -> Label Studio results): ``brush_labels``,
``polygon_labels``.
"""
