"""Real chromium (Debian's, never a downloaded one) driven by Playwright against real servers."""

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# A demo run lasts about 9 s at this pace: long enough to act on it mid-run.
DEMO_ENV = {"HERMES_WEB_DEMO_DELAY_MS": "40"}
# Set to a directory (docs/screenshots) to save screenshots of the main states.
SCREENSHOT_DIR = os.environ.get("HERMES_WEB_SCREENSHOT_DIR")


@pytest.fixture(scope="session")
def playwright():
    """The Playwright driver, for tests that launch a chromium of their own (other flags)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing: run `make browser-deps`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright):
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def new_page(browser):
    """``new_page(**context_options)``: a page in a fresh context; page errors fail the test."""
    contexts = []
    errors = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def demo_server(server_factory):
    return server_factory(env=DEMO_ENV)


def snap(page, name: str) -> None:
    """Save a screenshot when HERMES_WEB_SCREENSHOT_DIR is set."""
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / f"{name}.png"))
