"""User-facing errors. The CLI turns these into one paragraph on stderr and exit code 2, no traceback.

Raise `UserError` (or a subclass) for anything the user can fix: a malformed scenario or trace, a
missing file, a policy whose dims do not match its level, an unknown database version. The message
must name the file and the field path, and say what is allowed.
"""

from __future__ import annotations

# A file nested past Python's recursion limit (e.g. 500 '[' in a row): the parsers raise RecursionError.
NESTED_TOO_DEEPLY = "is nested too deeply to be read (past Python's recursion limit)"


class UserError(Exception):
    """Bad input: reported as `error: <message>` with exit code 2 and nothing written."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None):
        self.message = message
        self.path = path
        self.field = field
        where = ""
        if path:
            where += f"{path}"
        if field:
            where += f"{': ' if where else ''}field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(UserError):
    """A command-line mistake in a command whose exit codes 1 and 2 carry results (`rtcbench compare`):
    reported like any UserError, with exit code 4 (pytest's usage-error code)."""

    exit_code = 4

    @classmethod
    def from_user_error(cls, exc: UserError) -> UsageError:
        err = cls(str(exc))
        err.path, err.field = exc.path, exc.field
        return err
