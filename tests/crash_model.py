"""Crash states a POSIX file system permits, from a recording of what the code did.

In the style of ALICE and CrashMonkey: a :class:`Recorder` wraps the few ``os`` calls the
journal, recovery, metadata writes and compaction make (open/create, write, ftruncate,
fsync, link, rename, unlink, symlink, mkdir, rmdir) while a workload runs for real, and
logs each one (plus the workload's acknowledgements). :func:`crash_states` then replays
the log up to every durability point and builds the states a power cut could leave there:
each file keeps what its last fsync made durable, and the writes since may be dropped or
partly applied (a torn last write); each directory keeps the entries its last fsync made
durable, and the entry changes since (creates, links, renames, unlinks) may be dropped
from any point on. :func:`materialize` writes one such state into a directory, every mtime
set far in the past (as after a reboot, the files are old news to the next start-up).
"""

import os
import stat
import threading

# Which recorded operations end a stretch where nothing changes durability: crash states
# are built right after each of them (between two, only pending writes differ, and the
# states below already drop or tear those).
DURABILITY_OPS = frozenset({"fsync", "fsync_dir", "rename", "link", "unlink", "symlink", "mkdir", "rmdir", "create",
                            "ack"})
OLD_MTIME = 1_000_000_000  # 2001: older than any start-up stamp


class Recorder:
    """Records the file-system operations made under ``root`` (thread-safe)."""

    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.ops = []
        self._fds = {}  # fd -> (kind, key): ("file", inode) or ("dir", relative path)
        self._lock = threading.Lock()
        self.ignore_fsync = None  # a predicate over (op, recorder) that drops fsyncs: a mutation
        self.snapshot = snapshot(self.root)
        self._last_write = {}  # file id -> data of its last write
        # Files are named by ids of the model's own: the kernel reuses inode numbers (a
        # replaced metadata file's inode for the next new journal), the model must not.
        self._ids = {inode: inode for inode in self.snapshot["contents"]}
        self._next_id = 1 << 62

    # ------------------------------------------------------------ helpers

    def _relative(self, path, dir_fd=None):
        path = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(path):
            kind, key = self._fds.get(dir_fd, (None, None))
            if kind != "dir":
                return None
            path = os.path.join(self.root, key, path)
        absolute = os.path.abspath(path)
        parent = os.path.realpath(os.path.dirname(absolute))
        absolute = os.path.join(parent, os.path.basename(absolute))
        if absolute != self.root and not absolute.startswith(self.root + os.sep):
            return None
        return os.path.relpath(absolute, self.root)

    def _add(self, *op) -> None:
        self.ops.append(op)

    def _file_id(self, inode: int, created: bool) -> int:
        if created or inode not in self._ids:
            self._next_id += 1
            self._ids[inode] = self._next_id
        return self._ids[inode]

    def ack(self, label: str, **payload) -> None:
        """The workload was told this is done (an API answered, a command returned)."""
        with self._lock:
            self._add("ack", label, payload)

    # ------------------------------------------------------------ the wrappers

    def install(self, monkeypatch) -> None:
        real = {name: getattr(os, name) for name in (
            "open", "write", "ftruncate", "fsync", "close", "link", "unlink", "rename", "replace",
            "symlink", "mkdir", "rmdir")}
        recorder = self

        def split(relative):
            return os.path.dirname(relative), os.path.basename(relative)

        def fake_open(path, flags, mode=0o777, *, dir_fd=None):
            relative = recorder._relative(path, dir_fd)
            existed = relative is not None and os.path.lexists(os.path.join(recorder.root, relative))
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            if relative is None:
                return fd
            with recorder._lock:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    recorder._fds[fd] = ("dir", relative)
                    return fd
                created = bool(flags & os.O_CREAT) and not existed
                file_id = recorder._file_id(info.st_ino, created)
                recorder._fds[fd] = ("file", file_id)
                if created:
                    recorder._add("create", *split(relative), file_id)
                elif flags & os.O_TRUNC:
                    recorder._add("truncate", file_id, 0)
            return fd

        def fake_write(fd, data):
            written = real["write"](fd, data)
            entry = recorder._fds.get(fd)
            if entry is not None and entry[0] == "file" and written:
                end = os.lseek(fd, 0, os.SEEK_CUR)
                chunk = bytes(memoryview(data)[:written])
                with recorder._lock:
                    recorder._add("write", entry[1], end - written, chunk)
                    recorder._last_write[entry[1]] = chunk
            return written

        def fake_ftruncate(fd, length):
            real["ftruncate"](fd, length)
            entry = recorder._fds.get(fd)
            if entry is not None and entry[0] == "file":
                with recorder._lock:
                    recorder._add("truncate", entry[1], length)

        def fake_fsync(fd):
            real["fsync"](fd)
            entry = recorder._fds.get(fd)
            if entry is None:
                return
            with recorder._lock:
                op = ("fsync", entry[1]) if entry[0] == "file" else ("fsync_dir", entry[1])
                if recorder.ignore_fsync is not None and recorder.ignore_fsync(op, recorder):
                    return  # the mutation: as if this fsync were not in the code
                recorder._add(*op)

        def fake_close(fd):
            # Forget the descriptor before its number can be handed out again.
            with recorder._lock:
                recorder._fds.pop(fd, None)
                real["close"](fd)

        def fake_link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
            real["link"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=follow_symlinks)
            relative = recorder._relative(dst, dst_dir_fd)
            if relative is not None:
                inode = os.stat(os.path.join(recorder.root, relative), follow_symlinks=False).st_ino
                with recorder._lock:
                    recorder._add("link", *split(relative), recorder._file_id(inode, False))

        def fake_unlink(path, *, dir_fd=None):
            relative = recorder._relative(path, dir_fd)
            real["unlink"](path, dir_fd=dir_fd)
            if relative is not None:
                with recorder._lock:
                    recorder._add("unlink", *split(relative))

        def renamer(name):
            def fake_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
                source = recorder._relative(src, src_dir_fd)
                target = recorder._relative(dst, dst_dir_fd)
                real[name](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
                if source is not None and target is not None:
                    with recorder._lock:
                        recorder._add("rename", *split(source), *split(target))
            return fake_rename

        def fake_symlink(target, path, target_is_directory=False, *, dir_fd=None):
            real["symlink"](target, path, target_is_directory, dir_fd=dir_fd)
            relative = recorder._relative(path, dir_fd)
            if relative is not None:
                with recorder._lock:
                    recorder._add("symlink", *split(relative), os.fsdecode(target))

        def fake_mkdir(path, mode=0o777, *, dir_fd=None):
            real["mkdir"](path, mode, dir_fd=dir_fd)
            relative = recorder._relative(path, dir_fd)
            if relative is not None:
                with recorder._lock:
                    recorder._add("mkdir", *split(relative))

        def fake_rmdir(path, *, dir_fd=None):
            relative = recorder._relative(path, dir_fd)
            real["rmdir"](path, dir_fd=dir_fd)
            if relative is not None:
                with recorder._lock:
                    recorder._add("rmdir", *split(relative))

        for name, function in (("open", fake_open), ("write", fake_write), ("ftruncate", fake_ftruncate),
                               ("fsync", fake_fsync), ("close", fake_close), ("link", fake_link),
                               ("unlink", fake_unlink), ("rename", renamer("rename")), ("replace", renamer("replace")),
                               ("symlink", fake_symlink), ("mkdir", fake_mkdir), ("rmdir", fake_rmdir)):
            monkeypatch.setattr(os, name, function)

    def last_write(self, inode):
        return self._last_write.get(inode, b"")


def snapshot(root) -> dict:
    """The durable starting state: ``{relative dir: {name: entry}}`` and inode contents."""
    directories = {".": {}}
    contents = {}
    for directory, subdirectories, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        entries = directories.setdefault(relative, {})
        for name in subdirectories:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                entries[name] = ("symlink", os.readlink(path))
            else:
                entries[name] = ("dir",)
                directories.setdefault(os.path.normpath(os.path.join(relative, name)), {})
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                entries[name] = ("symlink", os.readlink(path))
                continue
            info = os.stat(path)
            entries[name] = ("file", info.st_ino)
            with open(path, "rb") as handle:
                contents[info.st_ino] = handle.read()
    return {"directories": directories, "contents": contents}


# ---------------------------------------------------------------- the model


class _State:
    """Durable and pending parts of every file and directory at one point of the log."""

    def __init__(self, start):
        self.durable_dirs = {key: dict(value) for key, value in start["directories"].items()}
        self.pending_dirs = {key: [] for key in self.durable_dirs}
        self.durable_data = dict(start["contents"])
        self.pending_data = {}
        self.acks = []

    def volatile_entry(self, directory, name):
        entries = _apply_entries(self.durable_dirs.get(directory, {}), self.pending_dirs.get(directory, []))
        return entries.get(name)

    def apply(self, op) -> None:
        kind = op[0]
        if kind == "create":
            _, directory, name, inode = op
            self.durable_data.setdefault(inode, b"")
            self.durable_data[inode] = b""  # a new inode (numbers can be reused)
            self.pending_data[inode] = []
            self._dir(directory).append(("add", name, ("file", inode)))
        elif kind == "write":
            _, inode, offset, data = op
            self.pending_data.setdefault(inode, []).append(("write", offset, data))
        elif kind == "truncate":
            _, inode, length = op
            self.pending_data.setdefault(inode, []).append(("truncate", length))
        elif kind == "fsync":
            inode = op[1]
            self.durable_data[inode] = _apply_data(self.durable_data.get(inode, b""), self.pending_data.pop(inode, []))
        elif kind == "fsync_dir":
            directory = op[1]
            self.durable_dirs[directory] = _apply_entries(self.durable_dirs.get(directory, {}),
                                                          self.pending_dirs.get(directory, []))
            self.pending_dirs[directory] = []
        elif kind == "link":
            _, directory, name, inode = op
            self._dir(directory).append(("add", name, ("file", inode)))
        elif kind == "unlink":
            _, directory, name = op
            self._dir(directory).append(("remove", name))
        elif kind == "rename":
            _, source_dir, source_name, target_dir, target_name = op
            entry = self.volatile_entry(source_dir, source_name)
            if source_dir == target_dir:
                self._dir(source_dir).append(("rename", source_name, target_name, entry))
            else:
                self._dir(target_dir).append(("add", target_name, entry))
                self._dir(source_dir).append(("remove", source_name))
        elif kind == "symlink":
            _, directory, name, target = op
            self._dir(directory).append(("add", name, ("symlink", target)))
        elif kind == "mkdir":
            _, directory, name = op
            self._dir(directory).append(("add", name, ("dir",)))
            child = os.path.normpath(os.path.join(directory, name))
            self.durable_dirs[child] = {}
            self.pending_dirs[child] = []
        elif kind == "rmdir":
            _, directory, name = op
            self._dir(directory).append(("remove", name))
        elif kind == "ack":
            self.acks.append((op[1], op[2]))

    def _dir(self, directory) -> list:
        self.pending_dirs.setdefault(directory, [])
        self.durable_dirs.setdefault(directory, {})
        return self.pending_dirs[directory]

    def units(self) -> list:
        """What is pending: ``("file", inode)`` and ``("dir", path)`` units."""
        units = [("file", inode) for inode, ops in self.pending_data.items() if ops]
        units += [("dir", directory) for directory, ops in self.pending_dirs.items() if ops]
        return units


def _apply_data(data: bytes, ops, torn: bool = False) -> bytes:
    content = bytearray(data)
    for index, op in enumerate(ops):
        if op[0] == "truncate":
            del content[op[1]:]
            continue
        _, offset, chunk = op
        if torn and index == len(ops) - 1:
            chunk = chunk[: max(1, len(chunk) // 2)]
        if len(content) < offset:
            content.extend(b"\0" * (offset - len(content)))
        content[offset:offset + len(chunk)] = chunk
    return bytes(content)


def _apply_entries(entries: dict, ops) -> dict:
    result = dict(entries)
    for op in ops:
        if op[0] == "add":
            if op[2] is not None:
                result[op[1]] = op[2]
        elif op[0] == "remove":
            result.pop(op[1], None)
        elif op[0] == "rename":
            _, source, target, entry = op
            result.pop(source, None)
            if entry is not None:
                result[target] = entry
    return result


class CrashState:
    """One state a power cut could leave: durable parts plus a choice of pending ones."""

    def __init__(self, state: _State, choice: dict, description: str, position: int):
        self.description = description
        self.position = position
        self.acks = list(state.acks)
        self.directories = {}
        for directory in set(state.durable_dirs) | set(state.pending_dirs):
            pending = state.pending_dirs.get(directory, [])
            keep = choice.get(("dir", directory), len(pending))
            self.directories[directory] = _apply_entries(state.durable_dirs.get(directory, {}), pending[:keep])
        self.contents = {}
        for inode in set(state.durable_data) | set(state.pending_data):
            pending = state.pending_data.get(inode, [])
            keep = choice.get(("file", inode), len(pending))
            torn = choice.get(("torn", inode), False)
            self.contents[inode] = _apply_data(state.durable_data.get(inode, b""), pending[:keep], torn)


def crash_states(recorder: Recorder):
    """Every crash state worth checking, in log order."""
    state = _State(recorder.snapshot)
    for position, op in enumerate(recorder.ops):
        state.apply(op)
        if op[0] not in DURABILITY_OPS:
            continue
        yield CrashState(state, {}, f"after op {position} {op[0]}: everything pending applied", position)
        units = state.units()
        if not units:
            continue
        none = {}
        for kind, key in units:
            none[(kind, key)] = 0
        yield CrashState(state, none, f"after op {position} {op[0]}: everything pending dropped", position)
        for unit in units:
            yield CrashState(state, {unit: 0}, f"after op {position} {op[0]}: {unit} dropped", position)
            kind, key = unit
            count = len(state.pending_data[key]) if kind == "file" else len(state.pending_dirs[key])
            if kind == "file":
                half = max(1, count // 2)
                yield CrashState(state, {**none, unit: half, ("torn", key): True},
                                 f"after op {position} {op[0]}: {unit} torn after {half} of {count} writes", position)
            elif count > 1:
                yield CrashState(state, {unit: count // 2},
                                 f"after op {position} {op[0]}: {unit} kept {count // 2} of {count} changes", position)


def materialize(crash: CrashState, target) -> None:
    """Write ``crash`` under ``target`` (which must not exist)."""
    os.makedirs(target, mode=0o700)

    def build(directory, path):
        for name, entry in crash.directories.get(directory, {}).items():
            full = os.path.join(path, name)
            if entry[0] == "dir":
                os.mkdir(full, 0o700)
                build(os.path.normpath(os.path.join(directory, name)), full)
            elif entry[0] == "symlink":
                os.symlink(entry[1], full)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    data = crash.contents.get(entry[1], b"")
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
    build(".", str(target))
    for directory, subdirectories, files in os.walk(target, topdown=False):
        for name in files + subdirectories:
            os.utime(os.path.join(directory, name), (OLD_MTIME, OLD_MTIME), follow_symlinks=False)
