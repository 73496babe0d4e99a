"""User-facing errors.

Anything the user can fix (a bad path, a bad flag, a broken image) is raised as
``CanstyleError``; the CLI prints its message on one line and exits with code 2.
Everything else is a bug and keeps its traceback.
"""


class CanstyleError(Exception):
    """An error caused by user input, reported without a traceback."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of a library's message (torch's weights_only text runs to six)."""
    return next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
