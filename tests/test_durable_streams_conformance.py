"""The official Durable Streams conformance suite (@durable-streams/server-conformance-tests,
pinned in tests/durable_streams/package.json) against a real ``hermes-web serve``.

Every test must pass except those listed, with their reason, in
tests/durable_streams/known-failures.txt (and docs/durable-streams.md); a listed test that
starts to pass fails this test too, so the list never goes stale.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SUITE_DIR = ROOT / "tests" / "durable_streams"
LONG_POLL_SECONDS = 2
# The suite opens many streams and connections at once from one address.
SUITE_ENV = {"HERMES_WEB_LONG_POLL_S": str(LONG_POLL_SECONDS), "HERMES_WEB_MAX_STREAMS_PER_CLIENT": "2000",
             "HERMES_WEB_MAX_CONNECTIONS_PER_CLIENT": "4000"}
SUITE_TIMEOUT_SECONDS = 600


def known_failures() -> set:
    lines = (SUITE_DIR / "known-failures.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def run_suite(base_url: str, report_path: Path) -> dict:
    vitest = SUITE_DIR / "node_modules" / ".bin" / "vitest"
    if not vitest.exists():
        pytest.fail("the conformance suite is not installed: run `make test` (npm ci in tests/durable_streams)")
    env = {**os.environ, "DS_BASE_URL": base_url, "DS_LONG_POLL_MS": str(LONG_POLL_SECONDS * 1000)}
    completed = subprocess.run(
        [shutil.which("node") or "node", str(vitest), "run", "--reporter=json", f"--outputFile={report_path}"],
        cwd=SUITE_DIR, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_SECONDS)
    if not report_path.exists():
        pytest.fail(f"vitest wrote no report (exit {completed.returncode}):\n{completed.stdout[-3000:]}\n"
                    f"{completed.stderr[-3000:]}")
    return json.loads(report_path.read_text())


@pytest.fixture(params=["files", "redis"])
def store_env(request):
    """The suite runs against both stores: the data dir's files, and a shared Redis."""
    if request.param == "files":
        return {}
    redis = request.getfixturevalue("redis_server")
    redis.flush()
    return {"HERMES_WEB_STORE": redis.url}


def test_the_official_suite_passes_but_for_the_documented_deviations(server_factory, store_env, tmp_path):
    server = server_factory(env={**SUITE_ENV, **store_env})
    report = run_suite(f"{server.url}/ds/streams", tmp_path / "report.json")
    results = {}
    for test_file in report["testResults"]:
        for result in test_file["assertionResults"]:
            results[result["fullName"]] = result
    assert len(results) >= 338, f"the suite ran only {len(results)} tests"
    failed = {name for name, result in results.items() if result["status"] == "failed"}
    listed = known_failures()
    unexpected = {name: (results[name].get("failureMessages") or [""])[0][:600] for name in failed - listed}
    assert not unexpected, json.dumps(unexpected, indent=1)
    now_passing = {name for name in listed if results.get(name, {}).get("status") == "passed"}
    assert not now_passing, f"listed as failing but passed (take them off the list): {sorted(now_passing)}"
    missing = listed - set(results)
    assert not missing, f"listed tests the suite no longer has: {sorted(missing)}"
    # Only the suite's own opt-in group (subscriptions, which it runs when asked) may be skipped.
    skipped = {name for name, result in results.items() if result["status"] in ("skipped", "pending", "todo")}
    assert all(name.startswith("Reserved subscription APIs") for name in skipped), sorted(skipped)
    passed = sum(result["status"] == "passed" for result in results.values())
    assert passed >= 324, f"{passed} of {len(results)} passed; the reference server passes 324"
