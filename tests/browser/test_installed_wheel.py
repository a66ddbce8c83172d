"""The wheel, installed into a fresh venv and served from another directory, is a working UI.

Marked ``packaging``: the wheel is built once per session (see tests/packaging.py).
"""

import pytest

from hermes_web.web.assets import VENDOR_FILES
from tests.browser.ui import assert_shows_journal, assistant_selector, open_session, send_message, wait_status

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]


def test_the_installed_wheel_serves_a_ui_that_streams_a_demo_run(installed_server, new_page):
    server = installed_server()
    session_id = server.create_session()
    page = new_page()
    console_errors, failed, vendor = [], [], {}
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.status} {response.url}"))
    page.on("response", lambda response: "/vendor/" in response.url
            and vendor.setdefault(response.url.rsplit("/", 1)[1], response.status))

    open_session(page, server, session_id)
    run_id = send_message(page, "does the **installed** wheel stream?")
    shown = wait_status(page, run_id, "completed")

    assert vendor == {name: 200 for name in VENDOR_FILES}
    # The demo answer is markdown: headings and bold text exist only if marked and DOMPurify ran.
    text = page.locator(f"{assistant_selector(run_id)} [data-testid=message-text]")
    assert text.locator("h2").count() >= 2 and text.locator("strong").count() >= 1
    assert "**" not in text.inner_text()
    assert shown["status"] == "completed" and len(shown["tools"]) == 3
    assert_shows_journal(page, server, session_id, run_id)
    assert console_errors == [] and failed == []
