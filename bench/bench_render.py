"""Rendering a streamed answer in the browser: main-thread time per 1,000 deltas when the
answer is already 100,000 deltas long, against a fresh (short) answer, in the same run.

Everything is real: a ``serve`` process journals an OpenAI-compatible provider's stream
(``tests/fake_openai.py`` over a socket) and Debian's chromium renders the session stream
through the page's own code. For each case the provider first sends the prefix as fast as
it can, waits until the page has drawn it, then sends a window of deltas at a steady
1,000 per second, and waits again before finishing the answer. The renderer's main
thread's CPU time (``/proc/<pid>/task/<pid>/stat``) is read at both ends of the window;
so is chromium's own count of main-thread task time (DevTools ``TaskDuration``), which is
wall time and so also grows when other processes hold the CPU.

Goals: long / short <= 3 (a delta's cost does not grow with the answer), and the page
keeps up with 1,000 deltas/s: main thread busy under half the window, and the window's
last delta drawn within 250 ms of reaching the page. How late it reached the page after
the provider sent it (the server's and the network's share) is printed beside it.
"""

import os
import random
import sys
import threading
import time

from common import print_table, running_server, temp_dir, verdict

from tests import provider_streams
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.fake_openai import FakeOpenAI, Stream

LONG_DELTAS = 100_000
WINDOW_DELTAS = 2_000
WINDOWS = 3  # measured one after the other; the median counts
RATE = 1_000  # deltas per second inside the window
GOAL_RATIO = 3.0
GOAL_BUSY = 0.5
GOAL_LAG_S = 0.25
WORDS = ("the journal keeps every delta of a run on disk before any browser sees it so a reload "
         "or a second device shows the same answer from the same byte offset").split()


def answer_pieces(count: int, seed: int) -> list:
    """``count`` deltas of a realistic Markdown answer: paragraphs, lists, code, headings."""
    rng = random.Random(seed)
    pieces = []
    section = 0
    while len(pieces) < count:
        kind = rng.choice(("paragraph", "paragraph", "paragraph", "list", "code", "heading"))
        if kind == "paragraph":
            words = [rng.choice(WORDS) for _ in range(rng.randint(30, 90))]
            words[0] = words[0].capitalize()
            pieces += [word + " " for word in words[:-1]] + [words[-1] + ".\n\n"]
        elif kind == "list":
            for _ in range(rng.randint(3, 6)):
                pieces.append("- ")
                pieces += [rng.choice(WORDS) + " " for _ in range(rng.randint(4, 10))]
                pieces.append("**done**\n")
            pieces.append("\n")
        elif kind == "code":
            pieces.append("```python\n")
            for line in range(rng.randint(4, 12)):
                pieces += ["    " * (line % 3), "value", f"_{line}", " = ", "compute(", f"{line}", ")\n"]
            pieces.append("```\n\n")
        else:
            section += 1
            pieces += ["## ", "Section ", f"{section}\n\n"]
    return pieces[:count]


PAGE_STATE = """async () => {
    const { state } = await import('/static/state.js');
    const run = state.fold && state.fold.activeRun;
    const node = run && state.nodes.get(`${run.runId}-assistant`);
    const text = node && node.querySelector('[data-testid=message-text]');
    return { applied: run ? run.text.length : -1, drawn: text ? (text.rawText ?? '').length : -1,
             status: node ? node.dataset.status : null };
}"""


def wait_for(page, predicate, timeout: float, interval: float = 0.02) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = page.evaluate(PAGE_STATE)
        if predicate(shown):
            return shown
        time.sleep(interval)
    raise TimeoutError(f"the page did not get there in {timeout} s: {shown}")


def chromium_metrics(cdp) -> dict:
    """Chromium's counters for the page: ``TaskDuration`` (s), ``LayoutCount``, ..."""
    return {metric["name"]: metric["value"] for metric in cdp.send("Performance.getMetrics")["metrics"]}


def renderer_pids() -> list:
    """Chromium renderer processes started by this process (through Playwright's driver)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue

    def ours(pid):
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    pids = []
    for pid in parents:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"--type=renderer" in handle.read() and ours(pid):
                    pids.append(pid)
        except OSError:
            continue
    return pids


def main_thread_cpu_seconds(pids) -> float:
    """User + system CPU time of the main threads (tid == pid) of ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/task/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(page, server, provider, prefix_count: int) -> dict:
    """Stream ``prefix_count`` deltas fast, then ``WINDOWS`` windows at ``RATE``; the median window."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    window_ends = [prefix_count + WINDOW_DELTAS * (index + 1) for index in range(WINDOWS)]
    pieces = answer_pieces(window_ends[-1], seed=prefix_count)
    chars_before = [0]
    for piece in pieces:
        chars_before.append(chars_before[-1] + len(piece))
    # The stream's items are a role chunk, then one chunk per piece: piece i is item i + 1.
    gates = {index: threading.Event() for index in [prefix_count] + window_ends}
    stream = Stream(provider_streams.openai_text(pieces, model="bench"),
                    gates={index + 1: gate for index, gate in gates.items()}, pace=(prefix_count + 1, RATE))
    text = provider.script(stream)
    session_id = server.create_session()
    page.goto(f"{server.url}/s/{session_id}")
    page.wait_for_selector("[data-testid=connection-state][data-state=idle]")
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": text, "agent": "openai"})
    assert status == 202, body
    run_id = body["run_id"]
    # A streamed delta may be held back a few characters by the redactor until the next one.
    wait_for(page, lambda shown: shown["drawn"] >= chars_before[prefix_count] - 32, timeout=300, interval=0.25)
    windows = []
    start = prefix_count
    for end in window_ends:
        time.sleep(1.0)  # let the previous frames and any garbage collection settle
        renderers = renderer_pids()
        before, cpu_before = chromium_metrics(cdp), main_thread_cpu_seconds(renderers)
        started = time.monotonic()
        gates[start].set()
        time.sleep(WINDOW_DELTAS / RATE - 0.05)
        applied_at = []
        target = chars_before[end] - 32

        def drawn(shown, target=target, applied_at=applied_at):
            if shown["applied"] >= target and not applied_at:
                applied_at.append(time.monotonic())
            return shown["drawn"] >= target

        wait_for(page, drawn, timeout=60)
        seen = time.monotonic()
        after, cpu_after = chromium_metrics(cdp), main_thread_cpu_seconds(renderers)
        cpu = cpu_after - cpu_before
        windows.append({
            "per_1000_ms": 1000 * cpu / WINDOW_DELTAS * 1000,
            "task_per_1000_ms": 1000 * (after["TaskDuration"] - before["TaskDuration"]) / WINDOW_DELTAS * 1000,
            "frames": int(after["LayoutCount"] - before["LayoutCount"]),
            "busy": cpu / (seen - started),
            "lag_s": max(0.0, seen - stream.held_at[end + 1]),
            # the same lag to the fold (the frame had arrived), before anything was drawn
            "arrived_lag_s": max(0.0, (applied_at or [seen])[0] - stream.held_at[end + 1]),
        })
        start = end
    gates[start].set()
    wait_for(page, lambda shown: shown["applied"] == -1, timeout=60, interval=0.05)  # no run active any more
    server.wait_run_finished(run_id)
    median = sorted(windows, key=lambda window: window["per_1000_ms"])[len(windows) // 2]
    return {**median, "chars": chars_before[-1], "all_ms": [round(window["per_1000_ms"]) for window in windows]}


def main() -> int:
    if not CHROMIUM.exists():
        print("/usr/bin/chromium is missing: run `make browser-deps`")
        return 1
    from playwright.sync_api import sync_playwright

    provider = FakeOpenAI().start()
    env = {"HERMES_WEB_OPENAI_BASE_URL": provider.url, "HERMES_WEB_OPENAI_MODEL": "bench"}
    try:
        with temp_dir("render") as root, running_server(root / "var", env=env) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            short = measure(page, server, provider, prefix_count=0)
            long = measure(page, server, provider, prefix_count=LONG_DELTAS - WINDOWS * WINDOW_DELTAS)
            browser.close()
    finally:
        provider.stop()

    rows = [
        [name, f"{case['chars']:,}", f"{case['per_1000_ms']:.0f} {case['all_ms']}", f"{case['task_per_1000_ms']:.0f}",
         f"{100 * case['busy']:.0f} %", f"{1000 * case['arrived_lag_s']:.0f} / {1000 * case['lag_s']:.0f}",
         str(case["frames"])]
        for name, case in (("short answer", short), (f"answer of {LONG_DELTAS:,} deltas", long))
    ]
    print_table(f"Renderer main thread, median of {WINDOWS} windows of {WINDOW_DELTAS:,} deltas at {RATE:,}/s"
                f" (load average {os.getloadavg()[0]:.1f})",
                ["case", "chars at end", "CPU ms / 1,000 deltas [each window]", "task ms / 1,000 deltas",
                 "main thread busy (CPU)", "last delta arrived / drawn after (ms)", "frames laid out"], rows)
    ratio = long["per_1000_ms"] / short["per_1000_ms"]
    print(f"ratio long / short: {ratio:.2f}")
    passed = verdict(f"long / short <= {GOAL_RATIO:g}", ratio <= GOAL_RATIO)
    keeps_up = all(case["busy"] < GOAL_BUSY and case["lag_s"] - case["arrived_lag_s"] < GOAL_LAG_S
                   for case in (short, long))
    passed &= verdict(f"keeps up with {RATE:,} deltas/s (busy < {GOAL_BUSY:.0%}, drawn < {1000 * GOAL_LAG_S:.0f} ms"
                      " after arriving)", keeps_up)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
