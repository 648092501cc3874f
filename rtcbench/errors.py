"""User-facing errors. The CLI turns these into one paragraph on stderr and exit code 2, no traceback.

Raise `UserError` (or a subclass) for anything the user can fix: a malformed scenario or trace, a
missing file, a policy whose dims do not match its level, an unknown database version. The message
must name the file and the field path, and say what is allowed.

Outputs go through `atomic_output` (write a temporary file beside the final one, then rename it), so a
failed write leaves no partial file, and its OSError becomes a `UserError` naming the path and the option.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------- outputs
# Every output file is written under a temporary name beside its final one and renamed into place, so a
# failure (a full disk, `ulimit -f`, a read-only folder) never leaves a partial or empty file under the
# final name; the failure itself is a `UserError` naming the file and the option it came from.


def os_error_reason(exc: OSError) -> str:
    """An OSError as a short reason with its errno name: ``No space left on device (ENOSPC)``."""
    code = exc.errno
    if code is None:
        return str(exc) or type(exc).__name__
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


def output_error(exc: OSError, path: str | os.PathLike, field: str | None, what: str = "write the file") -> UserError:
    """The `UserError` of an output that could not be written: the path, the option it came from, why."""
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "; free some space or choose another location"
    elif exc.errno == errno.EFBIG:
        hint = "; the file is larger than this process may write (see `ulimit -f`)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a writable location"
    return UserError(f"cannot {what}: {os_error_reason(exc)}{hint}; nothing was written there", path=str(path),
                     field=field)


def make_output_dir(folder: str | os.PathLike, field: str | None) -> Path:
    """Create an output folder (and its parents) -> the folder; a path that is a file, or a folder that
    cannot be made (read-only, /proc), is a `UserError` naming it and ``field``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError("exists and is not a directory", path=str(folder), field=field)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, folder, field, what="create the directory") from None
    return folder


@contextmanager
def atomic_output(final: str | os.PathLike, field: str | None) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``final`` to write; on success it is renamed to ``final``.

    On any failure the temporary file is removed and ``final`` is left as it was; an OSError becomes a
    `UserError` naming ``final`` and ``field`` (the option that chose the path, e.g. ``--out``)."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise output_error(exc, final, field) from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_text_atomically(final: str | os.PathLike, text: str, field: str | None) -> Path:
    """Write ``text`` (UTF-8) to ``final`` through `atomic_output` -> ``final``."""
    with atomic_output(final, field) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
