"""The error users see as one line (``archsearch: error: ...``), exit code 2, no traceback."""


class UserError(Exception):
    """A problem the user can fix: bad input, a missing file, an impossible request."""
