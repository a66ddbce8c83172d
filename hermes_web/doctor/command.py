"""``hermes-web doctor [--fix]``: the checks of whichever store the configuration names,
then those of the local files every store keeps (docs/doctor.md)."""

import os
import sys

from hermes_web.doctor import files, local, streams
from hermes_web.doctor.report import Report
from hermes_web.store.datadir import DataDir
from hermes_web.store.files.logs import RESERVE_BYTES
from hermes_web.store.logstore import StoreUnavailable


def run_from_cli(config, args, out=None) -> int:
    """``hermes-web doctor``: returns the exit code (0 nothing left, 1 findings, 2 usage)."""
    out = out or sys.stdout
    data_dir = DataDir(config.data_dir, config.uploads_dir)
    if not config.store_url and not os.path.isdir(data_dir.root):
        print(f"hermes-web doctor: no data dir at {data_dir.root.absolute()} (--data-dir or HERMES_WEB_DATA_DIR)",
              file=sys.stderr)
        return 2
    report = Report(out, fix=bool(args.fix), root=data_dir.root)
    references = local.References()
    live_journals = frozenset()
    if config.store_url:
        target = f"{data_dir.root} and the shared store"
        _check_redis(config, report, references)
    else:
        target = str(data_dir.root)
        live_journals = frozenset(files.check(data_dir, report, references))
        streams.check_streams(data_dir.root / "streams", report)
    local.check_uploads(data_dir.uploads_root, references, report)
    local.check_modes([data_dir.root, data_dir.uploads_root], report, keep=live_journals)
    local.check_space([path for path in (data_dir.root, data_dir.uploads_root) if os.path.isdir(path)],
                      RESERVE_BYTES, report)
    report.print(report.summary(target))
    return report.exit_code


def _check_redis(config, report, references) -> None:
    # Imported only here: redis-py is the optional extra of the shared store.
    import redis

    from hermes_web.doctor import redis as redis_check
    from hermes_web.store.durability import Durability
    from hermes_web.store.redis import open_stores

    stores = open_stores(config, Durability(config.fsync_policy, config.fsync_interval))
    try:
        redis_check.check(stores, report, references)
    except (StoreUnavailable, redis.RedisError) as error:
        references.complete = False  # what was not read may reference any upload
        report.finding("unreadable", "the shared store", f"{type(error).__name__}: the check stopped there")
