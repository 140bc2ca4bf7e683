"""One ``--help`` format for every command (``sam-server``, ``sam-train``, ``sam-eval``, ``sam-annotate``).

Each option's help ends with its default, and the description and epilog
(examples) are printed as written, so no help text needs the default typed
in by hand and none shows a docstring's markup. Range-checked argument
types let argparse name the flag in its error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Number = TypeVar("Number", int, float)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog as written; ``(default: X)`` after every option that has one.

    Options whose help already names its default (``(default`` in the text),
    and flags or options without a default (``False``, ``None``, empty), get
    nothing appended.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "(default" in text or not _worth_showing(action.default):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _worth_showing(default: object) -> bool:
    """False for defaults that say nothing: off, none given, empty."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (str, list, tuple)) and len(default) == 0)


def new_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with :class:`HelpFormatter`.

    Args:
        prog: The command's name.
        description: One or two plain sentences (no docstring markup).
        epilog: Examples, printed as written.
    """
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``minimum`` (argparse's error names the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a number >= 0 (NaN refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse ``type``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def checked_number(kind: type[Number], problem: Callable[[Number], str | None]) -> Callable[[str], Number]:
    """An argparse ``type``: a number of ``kind`` (``int`` or ``float``) that ``problem`` accepts.

    Args:
        kind: ``int`` (a whole number) or ``float``.
        problem: What is wrong with a value (e.g. ``must be in [0, 1], got 2``),
            ``None`` when it is fine; argparse prints it after the flag's name.
    """

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        reason = problem(value)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = "whole number" if kind is int else "number"
    return parse


def path_or_name(text: str) -> str:
    """``text`` as one spelling per thing: an existing file or folder as its resolved absolute
    path (``./x.pt``, ``x.pt`` and ``/here/x.pt`` are one file), anything else (a registry name
    such as ``vit_b``) as given."""
    return str(Path(text).resolve()) if Path(text).exists() else text
