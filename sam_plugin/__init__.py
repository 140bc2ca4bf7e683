"""Label Studio ML backend for Segment Anything.

The plugin speaks Label Studio's ML backend protocol (``/setup``,
``/predict``, ``/webhook``, ``/health``, ``/metrics``) and forwards prompts to
the shared model server through :class:`backend.client.base.SamClientBase`.
It never imports torch. Entry points: :func:`sam_plugin.blueprint.create_blueprint`
(mounted by ``sam-server`` under ``/ls``) and the ``sam-plugin`` command
(:mod:`sam_plugin.cli`).
"""
