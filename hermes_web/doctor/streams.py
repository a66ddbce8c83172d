"""The checks of Durable Streams kept as files (``<data dir>/streams/``, docs/durable-streams.md):
settings that do not decode, torn tails, damaged lines, and the folders a create or delete
that crashed left behind. Only those folders are repaired (removed, once a minute old):
the server cuts a torn tail itself the next time it opens the stream."""

import os
import shutil
import time
from pathlib import Path

from hermes_web.doctor.report import NotFixed
from hermes_web.store.files.streams import LOG_FILE, SETTINGS_FILE, TEMP_PREFIX, TRASH_PREFIX, read_settings
from hermes_web.store.stream_store import decode_entry

# A create or delete this young may still be running.
STRAY_GRACE_SECONDS = 60


def check_streams(streams_root, report, now: float = None) -> None:
    """Report every finding under ``streams_root`` (nothing when there is none)."""
    now = time.time() if now is None else now
    try:
        names = sorted(os.listdir(streams_root))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(streams_root, name)
        if name.startswith((TEMP_PREFIX, TRASH_PREFIX)):
            _check_stray(path, report, now)
        elif os.path.isdir(path):
            _check_stream(path, report)


def _check_stray(path: str, report, now: float) -> None:
    try:
        age = now - os.stat(path).st_mtime
    except FileNotFoundError:
        return
    if age < STRAY_GRACE_SECONDS:
        return

    def remove() -> str:
        if not os.path.exists(path):
            raise NotFixed("it is gone already")
        shutil.rmtree(path)
        return "removed"

    report.finding("stray-stream-folder", report.subject(path),
                   "left by a stream create or delete that did not finish; no stream reads it", fix=remove)


def _check_stream(path: str, report) -> None:
    if read_settings(Path(path)) is None:
        report.finding("damaged-stream", report.subject(os.path.join(path, SETTINGS_FILE)),
                       "missing or undecodable settings: the stream is not served")
        return
    log_path = os.path.join(path, LOG_FILE)
    try:
        with open(log_path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        report.finding("unreadable", report.subject(log_path), error.strerror or str(error))
        return
    complete = data.rfind(b"\n") + 1
    damaged, position = [], 0
    for line in data[:complete].split(b"\n")[:-1]:
        if decode_entry(line) is None:
            damaged.append(position)
        position += len(line) + 1
    if damaged:
        report.finding("damaged-line", report.subject(log_path),
                       f"{len(damaged)} line(s) that do not decode, the first at byte {damaged[0]}: "
                       "readers skip them, later offsets stay valid")
    if complete < len(data):
        report.finding("torn-tail", report.subject(log_path),
                       f"{len(data) - complete} byte(s) after the last newline: an append that was never "
                       "acknowledged, cut when the server next opens the stream")
