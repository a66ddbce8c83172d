"""Retention: prune archived journals older than ``--keep-archives``."""

import os

from hermes_web.compaction.plan import plan_pruning
from hermes_web.core.fsutil import fsync_dir, remove_if_empty, unlink_quietly
from hermes_web.core.ids import is_valid_id

ARCHIVE_SUFFIX = ".gz"
TEMP_PREFIX = ".tmp-"


def prune_archives(data_dir, options, report, say, now: float) -> None:
    """Delete archive files older than ``options.keep_archives`` (by mtime)."""
    root = data_dir.archive_root
    try:
        session_ids = sorted(name for name in os.listdir(root) if is_valid_id(name))
    except FileNotFoundError:
        return
    if options.session_id is not None:
        session_ids = [session_id for session_id in session_ids if session_id == options.session_id]
    for session_id in session_ids:
        archive_dir = root / session_id
        archives = []
        with os.scandir(archive_dir) as entries:
            for entry in entries:
                if entry.name.endswith(ARCHIVE_SUFFIX) and not entry.name.startswith(TEMP_PREFIX):
                    stat = entry.stat()
                    archives.append(((archive_dir / entry.name, stat.st_size), stat.st_mtime))
        doomed = plan_pruning(archives, now, options.keep_archives)
        for path, size in sorted(doomed):
            report.archives_pruned += 1
            report.bytes_pruned += size
            say(f"  {'would prune' if options.dry_run else 'pruned'} archive {path.relative_to(data_dir.root)}")
            if not options.dry_run:
                unlink_quietly(path)
        if doomed and not options.dry_run:
            fsync_dir(archive_dir)
            remove_if_empty(archive_dir)
