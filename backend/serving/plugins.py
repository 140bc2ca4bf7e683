"""Mount the Flask blueprints that installed plugins offer.

A plugin declares ``name = module:factory`` in the entry point group
``sam_server.blueprints``; ``factory(client)`` receives a
:class:`~backend.client.base.SamClientBase` over this server's model and
returns a :class:`flask.Blueprint` (the Label Studio plugin mounts itself
under ``/ls``). A plugin that fails to load is logged and skipped.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from flask import Flask

from backend.client.base import SamClientBase

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sam_server.blueprints"


def mount_plugins(app: Flask, client: SamClientBase) -> list[str]:
    """Register every plugin blueprint on ``app``.

    Returns:
        Names of the entry points that were mounted.
    """
    mounted = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = entry_point.load()
            app.register_blueprint(factory(client))
        except Exception:
            log.exception("plugin %r (%s) failed to load; skipped", entry_point.name, entry_point.value)
            continue
        mounted.append(entry_point.name)
        log.info("mounted plugin %r", entry_point.name)
    return mounted
