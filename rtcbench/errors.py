"""User-facing errors. The CLI turns these into one paragraph on stderr and exit code 2, no traceback.

Raise `UserError` (or a subclass) for anything the user can fix: a malformed scenario or trace, a
missing file, a policy whose dims do not match its level, an unknown database version. The message
must name the file and the field path, and say what is allowed.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: reported as `error: <message>` with exit code 2 and nothing written."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None):
        self.path = path
        self.field = field
        where = ""
        if path:
            where += f"{path}"
        if field:
            where += f"{': ' if where else ''}field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)
