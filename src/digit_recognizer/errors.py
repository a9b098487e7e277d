"""The local side's one-line errors: what the user can fix, and an OS error's reason in words.

The kernel (kernel.py) has its own UserError, since it imports nothing of the package; the command line
reports either the same way (cli.user_errors)."""


class UserError(Exception):
    """A mistake the user can fix (bad file, bad flag): shown as one line, without a traceback."""


def os_reason(exc: OSError) -> str:
    """'no space left on device', 'read-only file system', ... as a lower-case phrase."""
    return exc.strerror.lower() if exc.strerror else str(exc)
