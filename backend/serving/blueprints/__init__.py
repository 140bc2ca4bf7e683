"""The server's own blueprints, one per concern."""

from backend.serving.blueprints.openapi import create_openapi_blueprint
from backend.serving.blueprints.ops import create_ops_blueprint
from backend.serving.blueprints.v1 import create_v1_blueprint

__all__ = ["create_openapi_blueprint", "create_ops_blueprint", "create_v1_blueprint"]
