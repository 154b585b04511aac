"""Process exit codes of the ``netwarden`` command and the user-error base class.

A user error (bad flags, bad config, unreadable input, unusable model) ends the process with a
one-line message and one of the codes below, never a traceback.  Anything else is an internal
error (code 1) and is logged with its traceback.
"""

from __future__ import annotations

OK = 0
INTERNAL = 1  # a bug: logged with a traceback
USAGE = 2  # bad command line (argparse uses 2 as well)
BAD_CONFIG = 3  # the config file or a URL in it is invalid, a sink cannot be opened
BAD_INPUT = 4  # an input capture is missing, unreadable or not a capture
MODEL_ERROR = 5  # the model directory is missing, incomplete or does not match the schema
INTERRUPTED = 130  # stopped by SIGINT before the pipeline could start


class UserError(Exception):
    """An error caused by the user's input; carries its exit code.

    >>> UserError("no such file: x.pcap", BAD_INPUT).exit_code
    4
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Exception classes of the stages that mean "the user's input is unusable", by module prefix
# and name (matched by name so this module imports nothing).
_USER_ERRORS = {
    ("netwarden.capture", "CaptureError"): BAD_INPUT,
    ("netwarden.capture", "LiveCaptureError"): BAD_INPUT,
    ("netwarden.scoring", "ModelError"): MODEL_ERROR,
    ("netwarden.sinks", "SinkError"): BAD_CONFIG,
}


def user_error_code(e: BaseException) -> int | None:
    """The exit code of a user error, None for anything else (a bug).

    >>> user_error_code(UserError("x", BAD_INPUT)), user_error_code(KeyError("x"))
    (4, None)
    """
    if isinstance(e, UserError):
        return e.exit_code
    for cls in type(e).__mro__:
        for (prefix, name), code in _USER_ERRORS.items():
            if cls.__name__ == name and cls.__module__.startswith(prefix):
                return code
    if isinstance(e, OSError) and e.filename is not None:  # e.g. an unwritable --alerts-out
        return BAD_CONFIG
    return None
