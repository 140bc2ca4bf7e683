"""What every command's ``--help`` must show: each option's default, and no docstring markup."""

from __future__ import annotations

import argparse


def assert_help_shows_defaults(parser: argparse.ArgumentParser) -> None:
    """Each option with a meaningful default shows it in ``--help``; no reST markup anywhere.

    Flags (default ``False``) and options without a default (``None``, empty)
    are exempt: there is nothing to show.
    """
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":class:" not in text, text
    formatter = parser._get_formatter()
    for action in parser._actions:
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default in ([], "", argparse.SUPPRESS)
        ):
            continue
        shown = " ".join(formatter._expand_help(action).split())
        flag = action.option_strings[-1]
        assert f"(default: {default})" in shown, f"{flag}: its help does not show the default: {shown!r}"
