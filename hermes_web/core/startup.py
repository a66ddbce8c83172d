"""Start-up failures a user can fix: each becomes one line on stderr and a non-zero exit."""

import errno
import socket


class StartupError(Exception):
    """A command cannot start; the message says what is wrong and what to change."""


def listen_failure(host: str, port: int, error: OSError) -> StartupError:
    """The listening socket's error, in the words of the flags that fix it."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(error, socket.gaierror):
        return StartupError(f"{where}: {host!r} is not a known host name; set --host or HERMES_WEB_HOST")
    if error.errno == errno.EADDRINUSE:
        return StartupError(f"{where}: the port is already in use (another hermes-web?); "
                            "choose another with --port or HERMES_WEB_PORT")
    if error.errno == errno.EADDRNOTAVAIL:
        return StartupError(f"{where}: {host} is not an address of this machine; set --host or HERMES_WEB_HOST")
    if error.errno in (errno.EACCES, errno.EPERM):
        return StartupError(f"{where}: permission denied (ports below 1024 need privileges); choose another with --port")
    return StartupError(f"{where}: {error.strerror or error}")


def path_failure(what: str, error: OSError, hint: str = "") -> StartupError:
    """A file-system error on ``what`` (e.g. "the data dir /srv/var"), naming the path at fault."""
    path = error.filename if error.filename is not None else ""
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = f"{path} is not a directory"
    elif error.errno in (errno.EACCES, errno.EPERM):
        reason = f"permission denied on {path}"
    else:
        reason = f"{path}: {error.strerror or error}"
    return StartupError(f"cannot use {what}: {reason}{hint}")
