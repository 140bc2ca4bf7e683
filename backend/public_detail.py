"""Error messages as clients may see them: no Python reprs, no paths of the server's files.

An error's message often embeds another library's message, which can name a
Python object (``<_io.BytesIO object at 0x7f...>``) or a file on the server
(``/home/me/.cache/sam-server/sam_vit_b.pth``). Clients get the message with
object reprs replaced by words and local paths cut to their file name; the
server logs the full message. URL paths in messages (``POST /v1/images``)
are not file paths and stay as they are, and neither are the names the
server publishes anyway: a model served from a file is named by its path
(``GET /v1/models``), and messages give that name whole so that it can be
sent back.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>|<(?:module|class|function|built-in[^<>]*?) [^<>]*>")
_PATH_CHARS = r"[^\s'\"(),;<>\x00]*"  # \x00: public_detail's placeholders end a path


@lru_cache(maxsize=1)
def _local_roots() -> tuple[str, ...]:
    """Folders of this machine whose paths must not reach clients, longest first."""
    roots = {
        os.path.expanduser("~"),
        os.getcwd(),
        sys.prefix,
        sys.base_prefix,
        tempfile.gettempdir(),
        str(Path(__file__).resolve().parents[1]),
        "/etc",
        "/proc",
        "/sys",
        "/var",
        "/usr",
        "/opt",
        "/root",
        "/home",
        "/tmp",
    }
    usable = {root.rstrip("/") for root in roots if root and root not in ("/", "")}
    return tuple(sorted(usable, key=len, reverse=True))


@lru_cache(maxsize=1)
def _path_pattern() -> re.Pattern[str]:
    roots = "|".join(re.escape(root) for root in _local_roots())
    # not inside a URL or a word: "http://host/home/x" and "api/tmp" stay
    return re.compile(rf"(?<![\w.:/-])(?:file://)?(?:{roots})(?![\w.-])(?:/{_PATH_CHARS})?")


def _file_name(match: re.Match[str]) -> str:
    return match.group(0).rstrip("/").rsplit("/", 1)[-1] or "a server folder"


def public_detail(message: str, keep: Iterable[str] = ()) -> str:
    """``message`` with object reprs and local file paths removed (see the module docstring).

    Args:
        message: The error's full message.
        keep: Names the server publishes anyway, such as its models' names
            (``GET /v1/models``), which are paths for models served from a
            file. Each is left whole where it stands as a whole word, not
            inside a longer path; names that hold no local path need no
            keeping and are ignored.
    """
    kept = sorted({name for name in keep if name and _scrubbed(name) != name}, key=len, reverse=True)
    if not kept:
        return _scrubbed(message)
    words = re.compile(rf"(?<![\w./-])(?:{'|'.join(re.escape(name) for name in kept)})(?![\w./-])")
    names: list[str] = []

    def hold(match: re.Match[str]) -> str:
        names.append(match.group(0))
        return f"\x00{len(names) - 1}\x00"

    held = _scrubbed(words.sub(hold, message))
    return re.sub("\x00(\\d+)\x00", lambda m: names[int(m.group(1))], held)


def _scrubbed(text: str) -> str:
    return _path_pattern().sub(_file_name, _REPR.sub("an object", text))
