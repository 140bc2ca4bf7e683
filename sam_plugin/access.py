"""Who may call the plugin's routes.

Label Studio's "Connect model" dialog can send HTTP basic auth to an ML
backend (*Authentication: Basic Auth*, a user and a password; every call,
health checks included). The plugin asks for it:

* when ``BASIC_AUTH_USER`` and ``BASIC_AUTH_PASS`` are set: that pair
  (compared in constant time);
* otherwise, when it holds a Label Studio API key (``LABEL_STUDIO_API_KEY``):
  a request the model server has already authenticated with its token
  (``SAM_TOKEN`` as the basic-auth password; the server sets
  ``flask.g.sam_token_verified``). Without either, every route answers 401 and
  says what to set: a plugin that reads Label Studio with its key must not be
  open to anyone who can reach it;
* with neither a key nor a pair the routes are open (the plugin can only
  reach what the caller gives it).
"""

from __future__ import annotations

import hmac

from flask import Response, g, jsonify, request

from sam_plugin.settings import PluginSettings

REALM = 'Basic realm="sam-plugin"'
HOW_TO = (
    "set BASIC_AUTH_USER and BASIC_AUTH_PASS where the plugin runs (or SAM_TOKEN on the model server) "
    "and enter the same user and password in Label Studio's model settings (Authentication: Basic Auth)"
)


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def refuse(detail: str) -> Response:
    """A 401 answer asking for basic auth."""
    response = jsonify({"error": "unauthorized", "detail": detail})
    response.status = "401 Unauthorized"
    response.headers["WWW-Authenticate"] = REALM
    return response


def check_access(settings: PluginSettings) -> Response | None:
    """``None`` when the current request may proceed, else the 401 answer."""
    expected = settings.basic_auth
    if expected is not None:
        auth = request.authorization
        if auth is not None and _same(auth.username, expected[0]) & _same(auth.password, expected[1]):
            return None
        return refuse("basic auth required: " + HOW_TO)
    if settings.label_studio_api_key is None:
        return None
    if g.get("sam_token_verified", False):
        return None
    return refuse(f"this plugin holds a Label Studio API key, so it needs authentication: {HOW_TO}")
