"""A hostile page in a real chromium can neither read nor change anything: from another port
of this machine (same site, so even SameSite cookies go along), and from a DNS name rebound to
127.0.0.1 (PROTOCOL 2.5, Host and Origin)."""

import http.server
import re
import threading
import time

import pytest

from hermes_web.security import auth
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support import free_port

PASSWORD = "correct horse battery staple"

ATTACK = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" action="__TARGET__/api/sessions/__SESSION__/runs" enctype="text/plain" target="sink1">
  <input name='{"text":"sent by a form","pad":"' value='"}'>
</form>
<form id="encoded" method="POST" action="__TARGET__/api/sessions" target="sink2">
  <input name="title" value="made by a form">
</form>
<script>
const T = "__TARGET__", SID = "__SESSION__";
window.results = {};
async function attempt(name, action) {
  try {
    const outcome = await action();
    results[name] = outcome instanceof Response ? `${outcome.type} ${outcome.status}` : String(outcome);
  } catch (error) {
    results[name] = `error ${error.name}`;
  }
}
function submitted(form, frame) {
  return new Promise((resolve) => {
    document.querySelector(`iframe[name=${frame}]`).addEventListener("load", resolve, { once: true });
    document.getElementById(form).submit();
    setTimeout(resolve, 3000);
  });
}
(async () => {
  const run = `${T}/api/sessions/${SID}/runs`;
  await attempt("fetch text/plain", () => fetch(`${T}/api/sessions`, { method: "POST", credentials: "include", body: '{"title":"fetched"}' }));
  await attempt("no-cors run", () => fetch(run, { method: "POST", mode: "no-cors", credentials: "include",
                                                  headers: { "Content-Type": "text/plain" }, body: '{"text":"spend the key"}' }));
  await attempt("cors json run", () => fetch(run, { method: "POST", credentials: "include",
                                                    headers: { "Content-Type": "application/json" }, body: '{"text":"preflighted"}' }));
  await attempt("cors delete", () => fetch(`${T}/api/sessions/${SID}`, { method: "DELETE", credentials: "include" }));
  await attempt("no-cors delete", () => fetch(`${T}/api/sessions/${SID}`, { method: "DELETE", mode: "no-cors", credentials: "include" }));
  await attempt("read sessions", async () => (await fetch(`${T}/api/sessions`, { credentials: "include" })).text());
  await attempt("beacon text", () => navigator.sendBeacon(`${T}/api/sessions`, new Blob(['{"title":"beaconed"}'], { type: "text/plain" })));
  await attempt("beacon json", () => navigator.sendBeacon(run, new Blob(['{"text":"beaconed"}'], { type: "application/json" })));
  await attempt("beacon form", () => { const data = new FormData(); data.append("text", "beaconed"); return navigator.sendBeacon(run, data); });
  await submitted("plain", "sink1");
  await submitted("encoded", "sink2");
  document.title = "done";
})();
</script>
</body></html>
"""


class AttackerSite:
    """Another web server on another loopback port, serving one hostile page."""

    def __init__(self, html: str):
        page = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def snapshot(server) -> list:
    """Every session with its title, message count and active run."""
    sessions = server.api("GET", "/api/sessions")[1]
    return sorted((item["id"], item["title"], len(server.api("GET", f"/api/sessions/{item['id']}")[1]["messages"]),
                   str(item["active_run"])) for item in sessions)


def refused_posts(server) -> int:
    return len(re.findall(r'"(?:POST|DELETE) [^"]*" 40[13] ', server.log_path.read_text()))


def log_in(page, server) -> None:
    page.goto(f"{server.url}/")
    page.wait_for_url("**/login?next=*")
    page.fill("[data-testid=login-password]", PASSWORD)
    page.click("[data-testid=login-button]")
    page.wait_for_selector("[data-testid=logout]:visible")


@pytest.mark.parametrize("with_password", [False, True], ids=["no-password", "logged-in"])
def test_a_page_on_another_port_changes_nothing(server_factory, new_page, with_password):
    server = server_factory(env={"HERMES_WEB_PASSWORD": PASSWORD} if with_password else {})
    if with_password:
        server.token = auth.create_token(server.data_dir, "tests")
    session_id = server.create_session()
    before = snapshot(server)
    refused_before = refused_posts(server)
    attacker = AttackerSite(ATTACK.replace("__TARGET__", server.url).replace("__SESSION__", session_id))
    try:
        page = new_page()
        if with_password:
            log_in(page, server)  # the victim's browser holds a login cookie for 127.0.0.1
        page.goto(attacker.url)
        page.wait_for_function("document.title === 'done'", timeout=30_000)
        results = page.evaluate("window.results")
    finally:
        attacker.stop()
    # The page could read nothing: no CORS, so every cross-origin read failed.
    assert results["read sessions"].startswith("error"), results
    assert results["cors json run"].startswith("error") and results["cors delete"].startswith("error"), results
    # What the browser did send (simple fetches, beacons, forms) was refused at the door.
    deadline = time.monotonic() + 10
    while refused_posts(server) - refused_before < 6:
        assert time.monotonic() < deadline, (results, server.log_path.read_text()[-3000:])
        time.sleep(0.1)
    time.sleep(0.5)  # any straggling beacon
    assert snapshot(server) == before


REBIND = """<!doctype html><html><body><script>
window.results = {};
(async () => {
  const attempts = {
    list: ["GET", "/api/sessions"], view: ["GET", "/api/sessions/__SESSION__"], page: ["GET", "/"],
    create: ["POST", "/api/sessions", '{"title":"rebound"}'], remove: ["DELETE", "/api/sessions/__SESSION__"],
    run: ["POST", "/api/sessions/__SESSION__/runs", '{"text":"spend the key"}'],
  };
  for (const [name, [method, path, body]] of Object.entries(attempts)) {
    try {
      const response = await fetch(path, { method, body, headers: body ? { "Content-Type": "application/json" } : {} });
      results[name] = { status: response.status, body: await response.text() };
    } catch (error) {
      results[name] = { status: 0, body: String(error) };
    }
  }
  document.title = "done";
})();
</script></body></html>
"""


# Chromium's own Private/Local Network Access checks also stop this page; other browsers (and
# older ones) have none, so they are off here: what is tested is the server's Host check.
REBINDING_ARGS = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1",
                  "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
                  "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks"]


def rebinding_attack(playwright, server, session_id) -> dict:
    """Run the page on http://rebind.test:<the server's port>, a name that now means 127.0.0.1."""
    origin = f"http://rebind.test:{server.port}"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=REBINDING_ARGS)
    try:
        context = browser.new_context()
        # The attacker's page, as its own server sent it before the name was re-pointed.
        context.route(f"{origin}/attack", lambda route: route.fulfill(
            status=200, content_type="text/html", body=REBIND.replace("__SESSION__", session_id)))
        page = context.new_page()
        page.goto(f"{origin}/attack")
        page.wait_for_function("document.title === 'done'", timeout=30_000)
        return page.evaluate("window.results")
    finally:
        browser.close()


def test_a_page_on_a_rebound_name_reads_and_changes_nothing(server_factory, playwright, tmp_path):
    # The attack works where the check is off: this page reads the sessions...
    exposed = server_factory(env={"HERMES_WEB_ALLOWED_HOSTS": "*"}, data_dir=tmp_path / "exposed")
    exposed_id = exposed.create_session()
    results = rebinding_attack(playwright, exposed, exposed_id)
    assert results["list"]["status"] == 200 and exposed_id in results["list"]["body"]
    # ...and the Host check stops it.
    server = server_factory()
    session_id = server.create_session()
    before = snapshot(server)
    results = rebinding_attack(playwright, server, session_id)
    for name, outcome in results.items():
        # Same-origin in the browser's eyes, so the page reads each answer: a refusal, no data.
        assert outcome["status"] == 400, (name, outcome)
        assert '"host_not_allowed"' in outcome["body"] and session_id not in outcome["body"], (name, outcome)
    assert snapshot(server) == before
