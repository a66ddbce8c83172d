"""Small durable file-system helpers: private modes, atomic replace, directory fsync."""

import errno
import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing, durably; return it.

    A directory's entry lives in its parent: until the parent is fsynced, a power cut can
    take the new directory, and everything later made durable inside it, away.
    """
    path = Path(path)
    if not path.is_dir():
        # mkdir(parents=True) gives missing parents the default mode, not DIR_MODE.
        for directory in reversed([path, *path.parents]):
            if not directory.is_dir():
                try:
                    directory.mkdir(mode=DIR_MODE)
                except FileExistsError:
                    continue  # made meanwhile by another thread or process
                fsync_dir(directory.parent)
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory.

    Readers see the old or the new content, never a mix, and a crash at any point
    leaves at most a stray ``.tmp-*`` file beside it.
    """
    path = Path(path)
    temp_path = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(temp_path)
        raise
    os.close(fd)
    _rename_into_place(temp_path, path)


def atomic_symlink(target: str, path: Path) -> None:
    """Point the symlink ``path`` at ``target`` (made or replaced): a temp link renamed over
    it, then the directory fsynced. Readers see the old link or the new one, never none."""
    path = Path(path)
    temp_path = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    os.symlink(target, temp_path)
    _rename_into_place(temp_path, path)


def _rename_into_place(temp_path: Path, path: Path) -> None:
    try:
        os.replace(temp_path, path)
    except BaseException:
        unlink_quietly(temp_path)
        raise
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` (looping over short writes); return its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def unlink_quietly(path: Path) -> None:
    """Unlink ``path``; a file that is already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_if_empty(directory: Path) -> None:
    """Remove an emptied directory; a file created meanwhile keeps it."""
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return
        raise
    fsync_dir(directory.parent)
