"""Bearer-token check for the HTTP API (constant-time comparison)."""

from __future__ import annotations

import hmac

from backend.errors import Unauthorized


def is_public_path(path: str) -> bool:
    """Health checks stay open: ``/health`` and a mounted plugin's ``.../health``."""
    return path.rstrip("/").rsplit("/", 1)[-1] == "health"


def check_bearer(authorization: str | None, token: str) -> None:
    """Accept ``Authorization: Bearer <token>`` only.

    Raises:
        Unauthorized: Header missing, not a bearer token, or the wrong token.
    """
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "this server needs an access token: send the header 'Authorization: Bearer <token>'"
        )
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise Unauthorized("wrong access token; use the token the server was started with (SAM_TOKEN)")
