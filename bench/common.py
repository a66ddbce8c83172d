"""Shared benchmark helpers: timing statistics, the result table, servers, process memory.

Every benchmark compares against a baseline measured in the same run and reports a ratio,
because absolute figures on a shared machine move with whatever else it is doing.
"""

import contextlib
import math
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import ServerProcess, free_port  # noqa: E402  (after the path fix above)

__all__ = [
    "ROOT", "ServerProcess", "free_port", "percentile", "summary", "print_table", "verdict",
    "temp_dir", "running_server", "rss_kib", "cpu_seconds", "raise_open_file_limit", "format_ms", "MANY_VIEWERS_ENV",
]


def percentile(values, fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summary(seconds) -> dict:
    """mean / p50 / p99 / max of a list of durations, in milliseconds."""
    values = list(seconds)
    return {
        "n": len(values),
        "mean_ms": 1000 * sum(values) / len(values) if values else float("nan"),
        "p50_ms": 1000 * percentile(values, 0.50),
        "p99_ms": 1000 * percentile(values, 0.99),
        "max_ms": 1000 * max(values) if values else float("nan"),
    }


def format_ms(value: float) -> str:
    return f"{value:.2f}"


def print_table(title: str, headers, rows) -> None:
    """A small fixed-width table on stdout."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[index]) for row in cells)) for index, header in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(str(header).ljust(width) for header, width in zip(headers, widths)))
    print("  ".join("-" * width for width in widths))
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    sys.stdout.flush()


def verdict(goal: str, passed: bool) -> bool:
    """Print the goal with PASS or MISS; return ``passed``."""
    print(f"goal: {goal}: {'PASS' if passed else 'MISS'}", flush=True)
    return passed


@contextlib.contextmanager
def temp_dir(prefix: str):
    """A scratch directory removed afterwards (kept with HERMES_BENCH_KEEP=1)."""
    path = Path(tempfile.mkdtemp(prefix=f"hermes-bench-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("HERMES_BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


# Benchmarks that play a thousand viewers from one address lift the per-client caps, which
# exist to stop one address from doing exactly that (docs/security.md, Limits).
MANY_VIEWERS_ENV = {"HERMES_WEB_MAX_STREAMS_PER_CLIENT": "100000", "HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT": "100000"}


@contextlib.contextmanager
def running_server(data_dir: Path, env: dict = None):
    """A real ``serve`` process on a free port over ``data_dir``; stopped on exit."""
    server = ServerProcess(data_dir, env=env).start()
    try:
        yield server
    finally:
        server.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_open_file_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
