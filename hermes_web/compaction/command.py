"""``hermes-web compact``: the command line's options, then the compaction of whichever
store the configuration names (docs/compaction.md)."""

import sys

from hermes_web.compaction import files
from hermes_web.compaction.plan import Options, parse_duration
from hermes_web.core.ids import is_valid_id
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
    if config.store_url:
        # Imported only here: redis-py is the optional extra of the shared store.
        from hermes_web.compaction import redis

        return redis.run_from_cli(config, options)
    return files.compact(DataDir(config.data_dir), options)
