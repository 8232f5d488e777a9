"""The one exception type that the CLI turns into a one-line message (no stack trace)."""


class RicepoError(Exception):
    """An expected failure (bad input, missing data, offline hub) with a message naming where."""
