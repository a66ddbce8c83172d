"""What every store keeps in local files, checked the same way for both: uploads that no
message references, file modes looser than PROTOCOL 1 allows, and free space."""

import collections
import os
import shutil
import stat
import time

from hermes_web.core.attachment_markers import attached_file_paths
from hermes_web.core.codec import decode_line
from hermes_web.core.fsutil import DIR_MODE, FILE_MODE
from hermes_web.core.ids import is_valid_id
from hermes_web.doctor.report import NotFixed
from hermes_web.read.fold import RunFold
from hermes_web.store.uploads import BLOBS_DIR, INCOMING_DIR, META_DIR

# An attachment younger than this may still sit in a composer, about to be sent.
UPLOAD_GRACE_SECONDS = 3600
_PRIVATE_BITS = 0o077


class References:
    """What the messages of every session reference: attachment ids, and the paths named
    by legacy ``[Attached files: ...]`` markers. Incomplete when some run or transcript
    could not be read: then no upload is called unreferenced."""

    def __init__(self):
        self.attachments = collections.defaultdict(set)  # session_id -> attachment ids
        self.paths = set()  # real paths named by markers
        self.complete = True

    def add_run(self, session_id: str, run_id: str, entries) -> None:
        """A run's ``(record, end_offset)`` entries, folded as the session view folds them."""
        fold = RunFold(run_id, session_id)
        for record, end_offset in entries:
            fold.apply(record, end_offset)
        self.add_messages(session_id, fold.messages())

    def add_messages(self, session_id: str, messages) -> None:
        for message in messages:
            if message.get("role") != "user":
                continue
            for item in message.get("attachments") or ():
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    self.attachments[session_id].add(item["id"])
            for path in attached_file_paths(message.get("text")):
                if "\x00" not in path:
                    self.paths.add(os.path.realpath(path))


# ---------------------------------------------------------------- uploads


def check_uploads(uploads_root, references: References, report, now: float = None) -> None:
    """Report every upload no message references (older than UPLOAD_GRACE_SECONDS)."""
    if not references.complete:
        return
    cutoff = (time.time() if now is None else now) - UPLOAD_GRACE_SECONDS
    for name in sorted(_names(uploads_root)):
        path = os.path.join(uploads_root, name)
        if is_valid_id(name) and any(os.path.isdir(os.path.join(path, part)) for part in (META_DIR, BLOBS_DIR)):
            _check_session_uploads(name, path, references, report, cutoff)
        else:
            _check_other_files(path, references, report, cutoff)


def _check_session_uploads(session_id: str, directory: str, references: References, report, cutoff: float) -> None:
    referenced = references.attachments.get(session_id, set())
    named_blobs = set()
    meta_dir = os.path.join(directory, META_DIR)
    for name in sorted(_names(meta_dir)):
        attachment_id = name[:-5]
        if not name.endswith(".json") or not is_valid_id(attachment_id):
            continue
        path = os.path.join(meta_dir, name)
        meta = _read_json(path)
        if isinstance(meta, dict) and isinstance(meta.get("sha256"), str):
            named_blobs.add(meta["sha256"])
        if attachment_id in referenced or not _older(path, cutoff):
            continue
        described = f"{meta.get('name')!r}, {meta.get('size')} bytes" if isinstance(meta, dict) else "metadata unread"
        report.finding("unreferenced-upload", report.subject(path),
                       f"attachment {attachment_id} ({described}) is referenced by no message of session {session_id}")
    blobs_dir = os.path.join(directory, BLOBS_DIR)
    for name in sorted(_names(blobs_dir)):
        path = os.path.join(blobs_dir, name)
        if name in named_blobs or os.path.realpath(path) in references.paths or not _older(path, cutoff):
            continue
        report.finding("unreferenced-upload", report.subject(path), "content that no attachment of the session names")
    for name in sorted(_names(directory)):
        if name not in (META_DIR, BLOBS_DIR, INCOMING_DIR):  # the server sweeps .incoming itself
            _check_other_files(os.path.join(directory, name), references, report, cutoff)


def _check_other_files(path: str, references: References, report, cutoff: float) -> None:
    """Files of older tools, referenced only by the markers that name them."""
    for file_path in _files_below(path):
        if os.path.realpath(file_path) not in references.paths and _older(file_path, cutoff):
            report.finding("unreferenced-upload", report.subject(file_path), "a file that no message's marker names")


def _files_below(path: str):
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        yield path
    elif stat.S_ISDIR(info.st_mode):
        for directory, _, names in os.walk(path):
            for name in sorted(names):
                file_path = os.path.join(directory, name)
                try:
                    if stat.S_ISREG(os.lstat(file_path).st_mode):
                        yield file_path
                except OSError:
                    continue


def _read_json(path: str):
    try:
        with open(path, "rb") as handle:
            return decode_line(handle.read())
    except (OSError, ValueError):
        return None


def _older(path: str, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime < cutoff
    except OSError:
        return False


# ---------------------------------------------------------------- modes


def check_modes(roots, report, keep=frozenset()) -> None:
    """Report files looser than 0600 and directories looser than 0700 below ``roots``
    (symlinks are not followed); the fix takes the group's and others' bits away. Paths in
    ``keep`` (the journals of live runs) are reported, never changed."""
    seen = set()
    for root in roots:
        root = os.path.abspath(root)
        if root in seen or not os.path.isdir(root):
            continue
        seen.add(root)
        _check_mode(root, report, keep)

        def unreadable(error, root=root):
            report.finding("unreadable", report.subject(error.filename or root), error.strerror or str(error))

        for directory, directories, names in os.walk(root, onerror=unreadable):
            for name in sorted(directories) + sorted(names):
                _check_mode(os.path.join(directory, name), report, keep)


def _check_mode(path: str, report, keep) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return  # removed meanwhile
    except OSError as error:
        report.finding("unreadable", report.subject(path), error.strerror or str(error))
        return
    if stat.S_ISDIR(info.st_mode):
        wanted, what = DIR_MODE, "directory"
    elif stat.S_ISREG(info.st_mode):
        wanted, what = FILE_MODE, "file"
    else:
        return  # symlinks (the indexes), sockets: their own mode means nothing here
    mode = stat.S_IMODE(info.st_mode)
    if not mode & _PRIVATE_BITS:
        return
    detail = f"{what} mode {mode:04o}, at most {wanted:04o}"
    if path in keep:
        report.finding("loose-mode", report.subject(path), detail,
                       fix=lambda: _refuse("the journal of a live run is left alone"))
        return
    report.finding("loose-mode", report.subject(path), detail, fix=lambda: tighten(path, info))


def _refuse(reason: str):
    raise NotFixed(reason)


def tighten(path: str, seen: os.stat_result) -> str:
    """Take the group's and others' bits off the file or directory seen at ``path``.

    Changed through a descriptor opened without following symlinks and checked to be the
    same file: whoever can write in the data dir cannot swap in a symlink between the check
    and the change and have another file's mode changed.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if stat.S_ISDIR(seen.st_mode):
        flags |= os.O_DIRECTORY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotFixed("it was removed meanwhile") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
            raise NotFixed("it was replaced meanwhile")
        mode = stat.S_IMODE(now.st_mode) & ~_PRIVATE_BITS
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return f"mode {mode:04o}"


# ---------------------------------------------------------------- free space


def check_space(paths, reserve_bytes: int, report) -> None:
    """Report each file system of ``paths`` with less free space than ``reserve_bytes``."""
    devices = set()
    for path in paths:
        try:
            device = os.stat(path).st_dev
            if device in devices:
                continue
            devices.add(device)
            free = shutil.disk_usage(path).free
        except OSError:
            continue
        if free < reserve_bytes:
            report.finding("low-space", report.subject(path),
                           f"{free} bytes free, less than the {reserve_bytes}-byte reserve for terminal records: "
                           "appends fail once it is gone")


def _names(directory) -> list:
    try:
        return os.listdir(directory)
    except OSError:
        return []  # missing, or unreadable: the mode check names what it cannot read
