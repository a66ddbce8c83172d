"""Opening files strictly beneath a root directory, immune to symlink tricks.

A check on a path name (``realpath`` inside the root) and the later ``open`` of that name
are two system calls: anything that can write inside the root could swap a component
for a symlink in between. :func:`open_beneath` therefore never opens by full path: it
walks from the root's descriptor one component at a time with ``O_NOFOLLOW``, so a
symlink anywhere on the way (final component included) fails the open instead of
leading out of the root.
"""

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_PATH_CHARS = 4096


class UnsafePath(ValueError):
    """A path that is not a regular file strictly inside the root (never served)."""


def relative_inside(root: str, path: str):
    """The components of ``path`` relative to ``root`` if it lies strictly inside, else None.

    Both must already be absolute and normalised (``realpath``): this is pure string
    logic, so ``/data/uploads-evil`` is not inside ``/data/uploads``.
    """
    if not (os.path.isabs(root) and os.path.isabs(path)):
        return None
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)
    if relative == "." or parts[0] == os.pardir or any(part in ("", ".", "..") for part in parts):
        return None
    return parts


def resolve_inside(root: str, path: str):
    """``(real_root, components)`` of an absolute ``path`` whose real path lies inside ``root``.

    Raises UnsafePath for anything else: relative paths, NUL bytes, over-long names,
    symlinks that resolve outside. Nothing is opened here; see :func:`open_beneath`.
    """
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > MAX_PATH_CHARS:
        raise UnsafePath("not an acceptable path")
    if not os.path.isabs(path) or path.endswith(("/", "/.", "/..")):
        raise UnsafePath("not an absolute path of a file")
    real_root = os.path.realpath(root)
    try:
        real_path = os.path.realpath(path, strict=True)
    except (OSError, ValueError):
        raise UnsafePath("no such file") from None
    parts = relative_inside(real_root, real_path)
    if parts is None:
        raise UnsafePath("outside the root")
    return real_root, parts


def open_beneath(root: str, parts) -> int:
    """A read-only descriptor of the regular file ``root/<parts...>``, walked without symlinks.

    Raises UnsafePath when any component is a symlink, missing, or not a directory, or
    when the final one is not a regular file (a FIFO would block, a device would leak).
    """
    parts = list(parts)
    if not parts or any(part in ("", ".", "..") or os.sep in part or "\x00" in part for part in parts):
        raise UnsafePath("not a path inside the root")
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        raise UnsafePath("root is not a directory") from None
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError:
        raise UnsafePath("not a file inside the root") from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise UnsafePath("not a regular file")
    return file_fd
