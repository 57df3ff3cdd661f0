"""Exceptions as one short line, for log lines and command-line error messages."""

from __future__ import annotations

__all__ = ["exception_line"]

MAX_LENGTH = 300
"""Longest line returned (longer ones are cut)."""


def exception_line(exc: BaseException, with_type: bool = True) -> str:
    """An exception as one line of at most `MAX_LENGTH` characters.

    Parameters
    ----------
    exc : `BaseException`
        The exception.
    with_type : `bool`
        `True`: ``"<type>: <first line of the message>"`` (log lines of tasks that skip one bad input);
        `False`: the whole message with its whitespace collapsed, or the type name when it is empty
        (messages of command-line tools).
    """
    if with_type:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"[:MAX_LENGTH]
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."
