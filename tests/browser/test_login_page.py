"""The login page in a real chromium: redirect there, log in, come back, lose the login, log out;
and the page fits a phone."""

from hermes_web.security import auth
from tests.browser.conftest import snap
from tests.browser.ui import open_session, send_message, wait_status

PASSWORD = "correct horse battery staple"


def test_log_in_come_back_lose_the_login_and_log_out(server_factory, new_page, tmp_path):
    data_dir = tmp_path / "var"
    auth.set_password(data_dir, PASSWORD)
    server = server_factory(data_dir=data_dir)
    server.token = auth.create_token(data_dir, "tests")
    session_id = server.create_session()
    page = new_page()
    page.goto(f"{server.url}/s/{session_id}")
    page.wait_for_url(f"**/login?next=%2Fs%2F{session_id}")
    page.fill("[data-testid=login-password]", "not it")
    page.click("[data-testid=login-button]")
    error = page.locator("[data-testid=login-error]")
    error.wait_for(state="visible")
    assert "not the password" in error.text_content()
    page.fill("[data-testid=login-password]", PASSWORD)
    page.click("[data-testid=login-button]")
    page.wait_for_url(f"**/s/{session_id}")
    page.wait_for_selector("[data-testid=connection-state]:not([data-state=connecting])")
    page.locator("[data-testid=logout]").wait_for(state="visible")
    # The session stream (an EventSource) runs on the cookie: a turn streams in live.
    run_id = send_message(page, "hello over a login cookie")
    assert wait_status(page, run_id, "completed")["text"]
    cookie = [item for item in page.context.cookies() if item["name"] == "hermes_web_login"][0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # out of reach of scripts

    # The password changes elsewhere: the next request gets 401 and the page goes to the login.
    auth.set_password(data_dir, "a brand new password")
    page.fill("[data-testid=composer-input]", "sent after the password changed")
    page.press("[data-testid=composer-input]", "Enter")
    page.wait_for_url(f"**/login?next=%2Fs%2F{session_id}")
    page.fill("[data-testid=login-password]", "a brand new password")
    page.click("[data-testid=login-button]")
    page.wait_for_url(f"**/s/{session_id}")

    page.click("[data-testid=logout]")
    page.wait_for_url("**/login")
    page.goto(f"{server.url}/")
    page.wait_for_url("**/login?next=%2F")


def test_the_login_page_fits_a_phone(server_factory, new_page):
    server = server_factory(env={"HERMES_WEB_PASSWORD": PASSWORD})
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(f"{server.url}/login")
    card = page.locator(".login-card").bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 390
    field = page.locator("[data-testid=login-password]")
    # 16 px or more: phones do not zoom into the field when it gets focus.
    assert float(field.evaluate("node => getComputedStyle(node).fontSize")[:-2]) >= 16
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    snap(page, "phone-login")
    field.fill(PASSWORD)
    page.click("[data-testid=login-button]")
    page.wait_for_url(f"{server.url}/")
    page.wait_for_selector("[data-testid=composer-input]")


def test_without_a_password_there_is_no_logout_button(server, new_page):
    page = new_page()
    open_session(page, server, server.create_session())
    page.wait_for_selector("#sidebar-foot[data-credential=none]", state="attached")
    assert page.locator("[data-testid=logout]").is_hidden()
