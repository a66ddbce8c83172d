"""``hermes-web compact``: the command line's options, then the compaction of whichever
store the configuration names (docs/compaction.md)."""

import sys
import time
from pathlib import Path

from hermes_web.compaction import files
from hermes_web.compaction.plan import Options, Report, parse_duration
from hermes_web.core.codec import encode_line
from hermes_web.core.fsutil import atomic_write
from hermes_web.core.ids import is_valid_id
from hermes_web.core.metrics import COMPACTION_REPORT_NAME
from hermes_web.store.datadir import DataDir


def run_from_cli(config, args) -> int:
    """``hermes-web compact``: returns the exit code (0 ok or busy, 1 failure, 2 usage)."""
    try:
        options = Options(
            session_id=args.session,
            older_than=parse_duration(args.older_than if args.older_than is not None else "1h"),
            mode=args.mode or "archive",
            keep_archives=parse_duration(args.keep_archives) if args.keep_archives else None,
            dry_run=bool(args.dry_run),
            wait=bool(args.wait),
            salvage=bool(getattr(args, "salvage", False)),
        )
    except ValueError as error:
        print(f"hermes-web compact: {error}", file=sys.stderr)
        return 2
    if options.session_id is not None and not is_valid_id(options.session_id):
        print(f"hermes-web compact: invalid session id {options.session_id!r}", file=sys.stderr)
        return 2
    report = Report()
    if config.store_url:
        # Imported only here: redis-py is the optional extra of the shared store.
        from hermes_web.compaction import redis

        code = redis.run_from_cli(config, options, report=report)
    else:
        code = files.compact(DataDir(config.data_dir), options, report=report)
    if not options.dry_run and not report.busy:
        _leave_report(config.data_dir, report, code)
    return code


def _leave_report(data_dir, report: Report, code: int) -> None:
    """What the pass did, for the server's ``/metrics`` (``hermes_web_compaction_last_*``)."""
    fields = {name: getattr(report, name) for name in ("compacted", "finished", "skipped", "damaged", "errors",
                                                        "bytes_freed", "archives_pruned")}
    fields.update(finished_at=time.time(), exit_code=code)
    try:
        atomic_write(Path(data_dir) / COMPACTION_REPORT_NAME, encode_line(fields))
    except OSError as error:
        print(f"hermes-web compact: could not leave the report for /metrics: {error.strerror or error}",
              file=sys.stderr)
