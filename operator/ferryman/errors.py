"""Exceptions as users read them, in status messages, Events, logs and CLI errors.

Several exceptions carry no text: ``str(asyncio.TimeoutError())`` and
``str(aiohttp.ServerTimeoutError())`` are empty, so ``f"unreachable: {e}"`` says nothing
about the cause. ``describe`` always names the exception's type, and its text when there
is any.
"""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """``"<TypeName>: <text>"``, or ``"<TypeName>"`` when the exception's text is empty
    (or only whitespace). Never empty."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
