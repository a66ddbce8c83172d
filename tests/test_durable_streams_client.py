"""The official Durable Streams client (@durable-streams/client, pinned in
tests/durable_streams/package.json) follows a live run at ``/ds/runs/<run_id>``, in SSE and
in long-poll mode, through a proxy that cuts its connections mid-response, and resumes
exactly after each cut: it ends with every journal record once, in order, each batch at the
offset after it, and the stream closed at the journal's end (docs/durable-streams.md).

The client retries by itself a request cut before its headers are through; a cut in a
body fails its session instead, and tests/durable_streams/follow_run.mjs starts a new one
at the offset the client gave with the last batch it handled.
"""

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from hermes_web.core.records import is_terminal
from tests.support import ROOT, request

SUITE_DIR = ROOT / "tests" / "durable_streams"
FOLLOW_SCRIPT = SUITE_DIR / "follow_run.mjs"
CLIENT_TIMEOUT_SECONDS = 20
# The proxy's cuts, in order, each in the next response it fits: (request, where, n) cuts a
# response to a catch-up request (no ``live``) or to a live one (``live=sse``: the SSE
# stream; ``live=long-poll``: a poll), either after n bytes ("headers": inside the status
# line and headers, 300-500 bytes long, so the client's fetch fails and it retries by
# itself) or at least n bytes into the body and CUT_GAP_SECONDS after the cut before, so
# they spread over the run ("body": the client has the response and is reading it). The
# first is in the catch-up from -1, at least CATCH_UP_BYTES long.
CUT_PLAN = [("catch-up", "body", 600), ("catch-up", "headers", 100), ("live", "body", 40), ("live", "headers", 100),
            ("live", "body", 100), ("live", "headers", 100), ("live", "body", 40)]
CUT_GAP_SECONDS = 0.2
CATCH_UP_BYTES = 2000


class CuttingProxy:
    """A TCP proxy to ``upstream`` (host, port) that cuts responses as ``plan`` says
    (see CUT_PLAN): it forwards a response up to the cut, then closes both sides of the
    connection; a response too short for the next cut goes through whole, and once the
    plan is done everything does. A cut is always inside a response: at least one byte the
    server sent with it is held back. ``cuts`` records each as (request, where, n, time)."""

    def __init__(self, upstream: tuple, plan: list):
        self.upstream = upstream
        self.plan = list(plan)
        self.cuts = []
        self.connections = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopped = False
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            # What came back for the connection's latest request.
            response = {"head": b"", "received": 0, "live": False, "requested_at": 0.0}
            with self.lock:
                self.connections += 1
                self.sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server, response), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client, response), daemon=True).start()

    def _requests(self, client, server, response) -> None:
        try:
            while data := client.recv(65536):
                with self.lock:  # a new request (GETs have no body): its response starts next
                    response.update(head=b"", received=0, live=b"live=" in data.split(b"\r\n", 1)[0],
                                    requested_at=time.time())
                server.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, server)

    def _responses(self, server, client, response) -> None:
        try:
            while data := server.recv(65536):
                with self.lock:
                    before = response["received"]
                    response["received"] += len(data)
                    if b"\r\n\r\n" not in response["head"]:
                        response["head"] += data
                    cut = self._cut_at(response, before)
                if cut is not None:
                    client.sendall(data[:cut - before])
                    return
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close(server, client)

    def _cut_at(self, response, before: int):
        """Where to cut the response now, if the plan's next cut falls in its bytes from
        ``before`` to what has been received (the last one excluded); pops that cut."""
        if not self.plan:
            return None
        request, kind, n = self.plan[0]
        header_end = response["head"].find(b"\r\n\r\n")
        # Only in the response to a request sent after the last cut: one sent before may
        # belong to a session that cut has failed (its next poll, aborted with it).
        if (request == "live") != response["live"] or (self.cuts and response["requested_at"] <= self.cuts[-1][3]):
            return None
        if kind == "headers":
            at = n if header_end < 0 or n < header_end + 4 else None
        elif header_end < 0 or (self.cuts and time.time() - self.cuts[-1][3] < CUT_GAP_SECONDS):
            at = None
        else:  # in the middle of what just came, and far enough into the body
            at = max(header_end + 4 + n, before + (response["received"] - before) // 2)
        if at is None or not before <= at < response["received"]:
            return None
        self.plan.pop(0)
        self.cuts.append((request, kind, n, time.time()))
        return at

    @staticmethod
    def _close(*sockets) -> None:
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
        with self.lock:
            self._close(*self.sockets)


def journal_records(server, run_id: str) -> list:
    """``(record, end_offset)`` of every line of the run's journal, from the journal API."""
    status, body, headers = request(server.url, "GET", f"/api/runs/{run_id}/journal?offset=0")
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson", (status, body[:200])
    records, position = [], 0
    for line in body.splitlines(keepends=True):
        assert line.endswith(b"\n")
        position += len(line)
        records.append((json.loads(line), position))
    assert position == int(headers["X-Next-Offset"])
    return records


def wait_for_journal_bytes(server, run_id: str, size: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = journal_records(server, run_id)
        if records and records[-1][1] >= size:
            assert not is_terminal(records[-1][0]), "the run ended before the client started: make it slower"
            return
        time.sleep(0.02)
    raise TimeoutError(f"the journal of {run_id} did not reach {size} bytes in {timeout}s")


def ds_offset(journal_offset: int) -> str:
    return f"0000000000000000_{journal_offset:016d}"


@pytest.fixture
def node():
    if not (SUITE_DIR / "node_modules" / "@durable-streams" / "client").is_dir():
        pytest.fail("@durable-streams/client is not installed: run `make test` (npm ci in tests/durable_streams)")
    return shutil.which("node") or "node"


@pytest.mark.parametrize("live", ["sse", "long-poll"])
def test_the_official_client_resumes_exactly_after_every_cut(server_factory, node, live):
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "10", "HERMES_WEB_LONG_POLL_S": "2"})
    session_id = server.create_session()
    run_id = server.start_run(session_id, "follow me through a cutting proxy, word by word")["run_id"]
    # Enough written that the client's first response (its catch-up) has a body to cut.
    wait_for_journal_bytes(server, run_id, CATCH_UP_BYTES)
    proxy = CuttingProxy(("127.0.0.1", server.port), CUT_PLAN)
    try:
        done = subprocess.run(
            [node, str(FOLLOW_SCRIPT), f"{proxy.url}/ds/runs/{run_id}", live, str(CLIENT_TIMEOUT_SECONDS * 1000)],
            cwd=SUITE_DIR, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS + 10)
    finally:
        proxy.close()
    assert done.returncode == 0, f"exit {done.returncode}; cuts {proxy.cuts}\n{done.stderr[-3000:]}"
    assert server.wait_run_finished(run_id, timeout=10)["status"] == "completed"
    journal = journal_records(server, run_id)
    lines = [json.loads(line) for line in done.stdout.splitlines()]

    # What the client delivered is the journal, record for record, in order, nothing twice.
    received = [line["record"] for line in lines if "record" in line]
    assert len(received) == len(journal), f"{len(received)} records delivered, {len(journal)} in the journal"
    assert received == [record for record, _ in journal]
    # Each batch ends at the offset after its last record; each new session started at the
    # offset after the records handled so far; the close came at the journal's end.
    handled = 0
    for line in lines:
        if "record" in line:
            handled += 1
            if line["last"]:
                assert line["offset"] == ds_offset(journal[handled - 1][1]), (handled, line)
        elif "resume" in line:
            assert line["resume"] == (ds_offset(journal[handled - 1][1]) if handled else "-1"), (handled, line)
    assert lines[-1] == {"closed": True, "offset": ds_offset(journal[-1][1])}

    # The proxy really cut, as planned, several times while the run was being written; each
    # body cut failed its session (which the script resumed at the client's offset), and the
    # client retried requests cut in their headers by itself (not every one: a session's
    # next poll, sent as its body is cut, may be cut and then aborted with the session).
    finished_at = journal[-1][0]["ts"]
    live_cuts = [cut for cut in proxy.cuts if cut[3] < finished_at]
    retries = [line for line in lines if "retry" in line]
    resumes = [line for line in lines if "resume" in line]
    assert len(proxy.cuts) == len(CUT_PLAN) and len(live_cuts) >= 2, proxy.cuts
    assert 1 <= len(retries) <= sum(where == "headers" for _, where, _, _ in proxy.cuts), (retries, proxy.cuts)
    assert len(resumes) == sum(where == "body" for _, where, _, _ in proxy.cuts), (resumes, proxy.cuts)
    assert all("terminated" in line["error"] for line in resumes), resumes
    print(f"{live}: {len(journal)} records over {proxy.connections} connections, {len(proxy.cuts)} cuts "
          f"({len(live_cuts)} while the run was live), {len(retries)} fetch retries, {len(resumes)} new sessions")
