"""User-facing errors.

Every error a user can cause (a malformed architecture, a missing data file, a
contradictory flag) is raised as a subclass of `UserError`. The tools catch it,
print its message as one paragraph and exit with status 2, without a traceback.
Messages name the problem and the fix.
"""


class UserError(Exception):
    """An error caused by the user's input; the message says how to fix it."""


class ArcError(UserError, ValueError):
    """An architecture that does not belong to the space it was given for."""


class DataError(UserError, OSError):
    """A dataset that is missing, truncated or malformed."""
