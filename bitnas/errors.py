"""The one exception type that reaches the user as a single line and exit code 2."""

from __future__ import annotations


class BitnasError(Exception):
    """A problem with the user's input (spec, names, files, storage).

    The message is shown as is, on one line, so it must say what is wrong and how
    to fix it.
    """


class SpecError(BitnasError):
    """An invalid study spec field."""
