class UserError(Exception):
    """A mistake the user can fix (bad file, bad flag): shown as one line, without a traceback."""
