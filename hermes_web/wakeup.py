"""Wake-ups for tailers: one condition per run (and per session), one watcher per process.

Subscribers never poll the file on a timer and nothing is queued for them: each reads the
journal from its own offset, and waits on the run's :class:`Beacon` when it has caught up.
The local writer fires the beacon after every append; :class:`Watcher` fires it when
another process (a second ``serve`` on the same data dir) appends.
"""

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


class Watcher:
    """The single watcher of a process: fires beacons when watched paths change on disk.

    Uses inotify where available (one fd for the whole process) and falls back to
    stat-polling every ``poll_interval``. Paths are registered by tailers of runs this
    process does not write, so local runs cost nothing here.
    """

    def __init__(self, poll_interval: float = 0.25, use_inotify: bool = True):
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._watches = {}  # path -> {beacon: count}
        self._signatures = {}
        self._inotify = None
        self._descriptors = {}  # inotify watch descriptor -> directory path
        self._directories = {}  # directory path -> descriptor
        self._thread = None
        if use_inotify and inotify_simple is not None:
            try:
                self._inotify = inotify_simple.INotify()
            except OSError:
                self._inotify = None

    @property
    def mode(self) -> str:
        return "inotify" if self._inotify is not None else "polling"

    def watch(self, path, beacon: Beacon) -> None:
        """Fire ``beacon`` whenever ``path`` (a file or directory) changes."""
        path = os.fspath(path)
        with self._lock:
            holders = self._watches.setdefault(path, {})
            holders[beacon] = holders.get(beacon, 0) + 1
            self._signatures.setdefault(path, _signature(path))
            if self._inotify is not None:
                self._add_directory(path if os.path.isdir(path) else os.path.dirname(path))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="journal-watcher", daemon=True)
                self._thread.start()

    def unwatch(self, path, beacon: Beacon) -> None:
        path = os.fspath(path)
        with self._lock:
            holders = self._watches.get(path)
            if not holders or beacon not in holders:
                return
            holders[beacon] -= 1
            if holders[beacon] <= 0:
                del holders[beacon]
            if not holders:
                del self._watches[path]
                self._signatures.pop(path, None)

    def _add_directory(self, directory: str) -> None:
        if directory in self._directories:
            return
        flags = inotify_simple.flags
        mask = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.CLOSE_WRITE
        try:
            descriptor = self._inotify.add_watch(directory, mask)
        except OSError:
            return
        self._descriptors[descriptor] = directory
        self._directories[directory] = descriptor

    def _run(self) -> None:
        import select

        while True:
            if self._inotify is not None:
                # select is cooperative under gevent, so this thread is a plain greenlet there.
                readable, _, _ = select.select([self._inotify.fileno()], [], [], self.poll_interval * 4)
                if readable:
                    try:
                        events = self._inotify.read(timeout=0)
                    except OSError:
                        events = []
                    self._forget_removed(events)
            else:
                time.sleep(self.poll_interval)
            self._check_all()

    def _forget_removed(self, events) -> None:
        # A removed directory (compaction empties a session's journal dir) loses its watch;
        # forget it so it is watched again once it is recreated.
        with self._lock:
            for event in events:
                if event.mask & inotify_simple.flags.IGNORED:
                    directory = self._descriptors.pop(event.wd, None)
                    if directory is not None and self._directories.get(directory) == event.wd:
                        del self._directories[directory]

    def _check_all(self) -> None:
        with self._lock:
            paths = list(self._watches)
            if self._inotify is not None:
                for path in paths:
                    self._add_directory(path if os.path.isdir(path) else os.path.dirname(path))
        for path in paths:
            signature = _signature(path)
            with self._lock:
                if path not in self._watches or self._signatures.get(path) == signature:
                    continue
                self._signatures[path] = signature
                beacons = list(self._watches[path])
            for beacon in beacons:
                beacon.fire()


def _signature(path: str):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
