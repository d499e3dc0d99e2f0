"""Errors that the command line turns into exit statuses.

``InputError`` means the user's input is wrong (spec, data, arguments, artifact):
the CLI prints its message on one line and exits with status 2. Anything else
that escapes is an internal error (status 1).
"""


class InputError(ValueError):
    """Bad user input; the message names the problem in one line."""


TRACEBACK_CHARS = 2000
"""How much of a failed trial's traceback its log keeps: the innermost frames."""


def short_traceback(exc: BaseException) -> str:
    """The end of ``exc``'s formatted traceback (its innermost frames and the message)."""
    import traceback

    return "".join(traceback.format_exception(exc)).strip()[-TRACEBACK_CHARS:]


class DataWarning(UserWarning):
    """Data the run can go on with but the user should know about (extra columns at
    prediction time, say); the CLI prints each on one ``warning:`` line."""
