"""Access-token check for the HTTP API (constant-time comparison).

Clients send ``Authorization: Bearer <token>``. Label Studio can only send
HTTP basic auth to an ML backend, so ``Authorization: Basic`` with the token
as the password (any user name) is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from backend.api.errors import Unauthorized

PUBLIC_PATHS = frozenset({"/health"})
"""The exact paths that need no token (load balancers' health check); nothing else is open."""


def is_public_path(path: str) -> bool:
    """True for a path in :data:`PUBLIC_PATHS`, compared exactly."""
    return path in PUBLIC_PATHS


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def check_token(authorization: str | None, token: str) -> None:
    """Accept ``Bearer <token>`` (or basic auth whose password is the token).

    Raises:
        Unauthorized: Header missing, another scheme, or the wrong token.
    """
    scheme, _, credentials = (authorization or "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer" and credentials:
        given = credentials
    elif scheme == "basic" and credentials:
        given = _basic_password(credentials)
    else:
        raise Unauthorized(
            "this server needs an access token: send the header 'Authorization: Bearer <token>'"
        )
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        raise Unauthorized("wrong access token; use the token the server was started with (SAM_TOKEN)")
