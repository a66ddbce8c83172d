"""Nothing secret reaches the log: a real server's stderr, captured whole, after requests and
failures that would each have written a secret there."""

import re

from tests.fake_openai import FakeOpenAI
from tests.support import ServerProcess, request

# Shapes the pattern table cannot know: only the server's own knowledge of them masks them.
PROVIDER_KEY = "Zq8vN3pLr5Tt1Xw7Yb2Mc"
PASSWORD = "hunter2-but-much-longer"


def test_the_log_never_holds_the_provider_key_a_password_or_a_token(tmp_path):
    provider = FakeOpenAI().start()
    server = ServerProcess(tmp_path / "var", env={
        "HERMES_WEB_OPENAI_BASE_URL": provider.url, "OPENAI_API_KEY": PROVIDER_KEY, "HERMES_WEB_PASSWORD": PASSWORD,
    })
    try:
        server.start()
        from hermes_web.security import auth

        server.token = auth.create_token(server.data_dir, "log-test")
        session_id = server.create_session()
        # The provider echoes the request's credentials back in its error, as some do.
        failing = provider.script(status=401, error_body={
            "error": {"message": f"invalid key {PROVIDER_KEY} (sent as Authorization: Bearer {PROVIDER_KEY})"}})
        status, started, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": failing, "agent": "openai"})
        assert status == 202
        assert server.wait_run_finished(started["run_id"])["status"] == "failed"
        other_token = auth.create_token(server.data_dir, "in-a-url")
        github = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
        for path in (f"/api/sessions/{other_token}", f"/api/sessions?access_token={other_token}",
                     f"/api/sessions?token={github}", f"/api/file/raw?session_id={session_id}&path={github}",
                     f"/api/sessions?password={PASSWORD}", f"/api/sessions?key={PROVIDER_KEY}"):
            request(server.url, "GET", path)
        request(server.url, "POST", "/api/login", {"password": PASSWORD + "x"})
        request(server.url, "POST", "/api/login", {"password": PASSWORD})
        request(server.url, "GET", "/api/sessions", headers={"Authorization": f"Bearer {server.token}"})
        request(server.url, "GET", f"/api/{other_token}/" + "x" * 9000)  # the 414 path logs the line too
    finally:
        server.stop()
        provider.stop()
    log = server.log_path.read_text()
    for secret in (PROVIDER_KEY, PASSWORD, server.token, other_token, github, other_token[4:], github[4:]):
        assert secret not in log, secret
    # The lines were written, masked: the run's failure and the requests that carried secrets.
    assert re.search(r"run \S+ failed: .*HTTP 401.*invalid key \[REDACTED\]", log)
    assert "GET /api/sessions/hwt_[REDACTED" in log
    assert "GET /api/sessions?token=[REDACTED]" in log
    assert "failed login from 127.0.0.1" in log
    assert "Traceback" not in log
