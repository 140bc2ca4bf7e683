"""Access-token check for the HTTP API (constant-time comparison)."""

from __future__ import annotations

import base64
import binascii
import hmac

from backend.errors import Unauthorized


def is_public_path(path: str) -> bool:
    """Health checks stay open: ``/health`` and a mounted plugin's ``.../health``."""
    return path.rstrip("/").rsplit("/", 1)[-1] == "health"


def _basic_password(credentials: str) -> str | None:
    """The password of ``Basic base64(user:password)`` credentials, or None when malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return password if sep else None


def check_bearer(authorization: str | None, token: str) -> None:
    """Accept ``Authorization: Bearer <token>``, or basic auth whose password is the token.

    Label Studio can only send basic auth to an ML backend, so the mounted
    plugin routes are reached with any user name and the token as password.

    Raises:
        Unauthorized: Header missing, another scheme, or the wrong token.
    """
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and given:
        password = _basic_password(given)
        given = password if password else ""
    elif scheme.lower() != "bearer":
        given = ""
    if not given:
        raise Unauthorized(
            "this server needs an access token: send the header 'Authorization: Bearer <token>' "
            "(Label Studio: basic auth with the token as password)"
        )
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise Unauthorized("wrong access token; use the token the server was started with (SAM_TOKEN)")
