"""Wake-ups for tailers: one beacon per run (and per session), one watcher per process.

Subscribers never poll the file on a timer and nothing is queued for them: each reads the
log from its own offset, and waits on the run's :class:`Beacon` when it has caught up.
The local writer fires the beacon after every append; :class:`Watcher` fires it when
another process (a second ``serve`` on the same data dir) changes a watched file.
"""

import errno
import os
import threading
import time
import weakref

try:  # inotify is Linux-only; polling is the fallback
    import inotify_simple
except ImportError:  # pragma: no cover - depends on the platform
    inotify_simple = None


class Beacon:
    """A generation counter with an event per generation, so a wake-up between read and
    wait is never lost.

    Firing sets the current generation's event and installs a fresh one: every waiter is
    released by one ``set`` (under gevent a single hub callback wakes them all), where a
    condition would hand a lock from waiter to waiter, which costs about four times as
    much with a thousand viewers of one run.
    """

    __slots__ = ("_lock", "_event", "generation", "__weakref__")

    def __init__(self):
        self._lock = threading.Lock()
        self._event = threading.Event()
        self.generation = 0

    def fire(self) -> None:
        with self._lock:
            self.generation += 1
            event, self._event = self._event, threading.Event()
        event.set()

    def wait_past(self, generation: int, timeout: float) -> bool:
        """Wait until the generation differs from ``generation``; False on timeout."""
        # The event is taken before the generation is compared: a fire in between either
        # shows in the comparison or sets the event taken.
        event = self._event
        if self.generation != generation:
            return True
        event.wait(timeout)
        return self.generation != generation


class Beacons:
    """Process-wide registry: the beacon of a run or session lives while someone holds it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._beacons = weakref.WeakValueDictionary()

    def get(self, key) -> Beacon:
        with self._lock:
            beacon = self._beacons.get(key)
            if beacon is None:
                beacon = Beacon()
                self._beacons[key] = beacon
            return beacon

    def fire(self, key) -> None:
        """Fire the beacon of ``key`` if anyone is waiting on it."""
        with self._lock:
            beacon = self._beacons.get(key)
        if beacon is not None:
            beacon.fire()

    def fire_all(self) -> None:
        """Wake every waiter (after a gap in which wake-ups may have been missed)."""
        with self._lock:
            beacons = list(self._beacons.values())
        for beacon in beacons:
            beacon.fire()


# What a registration wants to hear about.
ENTRIES = "entries"  # names appearing in or leaving a directory (new runs, replaced files)
CONTENT = "content"  # one file's content changing, or its writer closing it


class Watcher:
    """The single watcher of a process: fires beacons when watched files change on disk.

    Registrations are indexed by directory and name, so an event touches only the beacons
    of the file it names: a wake-up costs the same with one watched session or a thousand.
    Uses inotify where available (one fd for the whole process), with a directory's mask
    kept to what its registrations need: appends to a journal nobody follows from another
    process raise no event at all. Falls back to stat-polling every ``poll_interval``.
    """

    def __init__(self, poll_interval: float = 0.25, use_inotify: bool = True):
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._watches = {}  # (directory, name or None, kind) -> {beacon: count}
        self._by_directory = {}  # directory -> set of registration keys
        self._signatures = {}  # registration key -> stat signature (polling only)
        self._inotify = None
        self._descriptors = {}  # inotify watch descriptor -> directory
        self._masks = {}  # directory -> (descriptor, mask)
        self._thread = None
        # Opened with the first watch: a process that never tails another's runs (the
        # compaction command, a test) holds no inotify descriptor.
        self._use_inotify = use_inotify and inotify_simple is not None

    @property
    def mode(self) -> str:
        return "inotify" if self._use_inotify else "polling"

    def _start(self) -> None:
        if self._use_inotify:
            try:
                self._inotify = inotify_simple.INotify()
            except OSError:
                self._use_inotify = False
        self._thread = threading.Thread(target=self._run, name="journal-watcher", daemon=True)
        self._thread.start()

    def watch(self, directory, name, beacon: Beacon, kind: str = ENTRIES) -> None:
        """Fire ``beacon`` when ``name`` in ``directory`` changes as ``kind`` says
        (``name`` None with ENTRIES: any entry of the directory)."""
        key = (os.fspath(directory), name, kind)
        with self._lock:
            if self._thread is None:
                self._start()
            holders = self._watches.setdefault(key, {})
            holders[beacon] = holders.get(beacon, 0) + 1
            if len(holders) == 1 and holders[beacon] == 1:
                self._by_directory.setdefault(key[0], set()).add(key)
                if self._inotify is None:
                    self._signatures[key] = _signature(key)
                else:
                    self._update_mask(key[0])

    def unwatch(self, directory, name, beacon: Beacon, kind: str = ENTRIES) -> None:
        key = (os.fspath(directory), name, kind)
        with self._lock:
            holders = self._watches.get(key)
            if not holders or beacon not in holders:
                return
            holders[beacon] -= 1
            if holders[beacon] <= 0:
                del holders[beacon]
            if not holders:
                del self._watches[key]
                self._signatures.pop(key, None)
                keys = self._by_directory.get(key[0])
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_directory[key[0]]
                if self._inotify is not None:
                    self._update_mask(key[0])

    # ------------------------------------------------------------ inotify

    def _needed_mask(self, directory: str) -> int:
        flags = inotify_simple.flags
        keys = self._by_directory.get(directory, ())
        mask = 0
        if keys:
            mask |= flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.MOVED_FROM
        if any(kind == CONTENT for _, _, kind in keys):
            mask |= flags.MODIFY | flags.CLOSE_WRITE
        # A directory that does not exist yet is waited for through its parent.
        for child in self._masks_pending_under(directory):
            mask |= flags.CREATE | flags.MOVED_TO
        return mask

    def _masks_pending_under(self, directory: str):
        return [key for key in self._by_directory if os.path.dirname(key) == directory and key not in self._masks]

    def _update_mask(self, directory: str) -> None:
        """Give ``directory`` the inotify mask its registrations need (none: unwatched)."""
        mask = self._needed_mask(directory)
        current = self._masks.get(directory)
        if current is not None and current[1] == mask:
            return
        if not mask:
            if current is not None:
                del self._masks[directory]
                self._descriptors.pop(current[0], None)
                try:
                    self._inotify.rm_watch(current[0])
                except OSError:
                    pass
            self._update_parent(directory)
            return
        try:
            descriptor = self._inotify.add_watch(directory, mask)
        except OSError as error:
            if current is not None:
                del self._masks[directory]
                self._descriptors.pop(current[0], None)
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                self._update_parent(directory)  # wait for it to be created
            return
        if current is not None and current[0] != descriptor:
            self._descriptors.pop(current[0], None)
        self._descriptors[descriptor] = directory
        self._masks[directory] = (descriptor, mask)
        self._update_parent(directory)

    def _update_parent(self, directory: str) -> None:
        parent = os.path.dirname(directory)
        if parent and parent != directory and (parent in self._masks or self._masks_pending_under(parent)):
            self._update_mask(parent)

    def _dispatch(self, events) -> list:
        """The beacons the events concern (under the lock)."""
        flags = inotify_simple.flags
        entry_mask = flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.MOVED_FROM
        beacons = []
        for event in events:
            directory = self._descriptors.get(event.wd)
            if directory is None:
                continue
            if event.mask & flags.IGNORED:
                # The directory was removed (compaction empties a session's journal dir):
                # forget the watch; its registrations wait for it to come back.
                self._descriptors.pop(event.wd, None)
                if self._masks.get(directory, (None,))[0] == event.wd:
                    del self._masks[directory]
                self._update_parent(directory)
                continue
            name = event.name
            if event.mask & entry_mask:
                beacons.extend(self._watches.get((directory, None, ENTRIES), ()))
                beacons.extend(self._watches.get((directory, name, ENTRIES), ()))
                child = os.path.join(directory, name)
                if child in self._by_directory and child not in self._masks:
                    self._update_mask(child)  # a directory someone waits for appeared
                    beacons.extend(holder for key in self._by_directory.get(child, ()) for holder in self._watches[key])
            if event.mask & (flags.MODIFY | flags.CLOSE_WRITE | flags.MOVED_TO | flags.DELETE):
                beacons.extend(self._watches.get((directory, name, CONTENT), ()))
        return beacons

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        import select

        while True:
            if self._inotify is not None:
                # select is cooperative under gevent, so this thread is a plain greenlet there.
                readable, _, _ = select.select([self._inotify.fileno()], [], [], 5.0)
                if not readable:
                    continue
                try:
                    events = self._inotify.read(timeout=0)
                except OSError:
                    continue
                with self._lock:
                    beacons = self._dispatch(events)
            else:
                time.sleep(self.poll_interval)
                beacons = self._poll()
            for beacon in set(beacons):
                beacon.fire()

    def _poll(self) -> list:
        with self._lock:
            keys = list(self._watches)
        beacons = []
        for key in keys:
            signature = _signature(key)
            with self._lock:
                if key not in self._watches or self._signatures.get(key) == signature:
                    continue
                self._signatures[key] = signature
                beacons.extend(self._watches[key])
        return beacons


def _signature(key):
    directory, name, _ = key
    try:
        stat = os.stat(directory if name is None else os.path.join(directory, name))
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
