"""The errors the CLI turns into one line on stderr and a non-zero exit, never a traceback
(``prep --debug`` shows the traceback too)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
from pathlib import Path

log = logging.getLogger("prep")
DEBUG = {"on": False}  # set by ``prep --debug``


class PrepError(Exception):
    """Unusable input or configuration; the message is shown to the user as is."""


class ShardError(PrepError):
    """A shard or index that does not hold what prep writes. Shards may come from elsewhere,
    so they are untrusted input: every reader checks them against the index as it reads, and
    says what is wrong in one line naming the shard."""


class Stopped(BaseException):
    """SIGTERM (a scheduler's time limit, ``kill``): a BaseException, so no unit records it as
    its own failure on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_sigterm() -> None:
    """From now on SIGTERM ends the run through :class:`Stopped` (finished units stay)."""

    def handler(signum, _frame):
        raise Stopped(signum)

    signal.signal(signal.SIGTERM, handler)


OS_HINTS = {
    errno.ENOSPC: "free space on that disk, or choose another --out",
    errno.EDQUOT: "free space in your quota, or choose another --out",
    errno.EROFS: "that file system is read-only: choose another --out",
    errno.EACCES: "no permission there: choose another --out (or --root you can read)",
    errno.EPERM: "not permitted there: choose another --out",
}


def os_error_line(exc: OSError) -> str:
    """What failed, where, and what to do about it, in one line."""
    where = f" ({exc.filename})" if exc.filename else ""
    line = f"{exc.strerror or exc}{where}"
    if exc.errno == errno.ENOSPC and exc.filename:
        folder = Path(exc.filename).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        line += f", {shutil.disk_usage(folder).free // 2**20} MB free"
    hint = OS_HINTS.get(exc.errno)
    return f"{line}: {hint}" if hint else line


def leave_now(status: int) -> None:
    """Exit at once, past interpreter shutdown: decode threads may be inside FFmpeg, MediaPipe or
    torch, and finalising Python under them aborts the process ("terminate called without an
    active exception"). Locks and temporaries were released while the exception unwound."""
    import sys

    from pipeline.native_logs import unfilter_native_stderr

    sys.stdout.flush()
    unfilter_native_stderr()
    sys.stderr.flush()
    os._exit(status)


class handled_errors:
    """:class:`PrepError` and the OS's errors become one line on stderr and exit 1; SIGTERM
    says the run stopped and that running the same command again resumes it (exit 143)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        import typer

        if exc_type is None:
            return False
        if DEBUG["on"] and not issubclass(exc_type, Stopped):
            return False  # the traceback, as Python prints it
        if issubclass(exc_type, PrepError):
            typer.echo(f"prep: error: {exc}", err=True)
            raise typer.Exit(1)
        if issubclass(exc_type, OSError):
            typer.echo(f"prep: error: {os_error_line(exc)}", err=True)
            raise typer.Exit(1)
        if issubclass(exc_type, Stopped):
            typer.echo(
                f"prep: stopped by {exc}; finished units are kept: run the same command again to resume",
                err=True,
            )
            leave_now(128 + exc.signum)
        return False
