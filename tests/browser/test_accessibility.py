"""Accessibility: every control is at least 44 x 44 px on a phone, text meets WCAG AA
contrast in light and dark schemes (checked by axe-core, a test-only npm package), and
every action has an accessible name that says what it does."""

from pathlib import Path

import pytest

from tests.browser.conftest import snap
from tests.browser.test_attachments import png_bytes
from tests.browser.ui import open_session, wait_status
from tests.fake_openai import FakeOpenAI
from tests.test_uploads import upload_one

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
CODE_ANSWER = "Run this:\n\n```python\nprint('hello')\n```\n\nSee [the docs](https://example.com).\n"


@pytest.fixture
def provider():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def rich_session(server_factory, provider):
    """A session with everything a transcript can show: an image attachment, reasoning, tool
    cards (the demo agent), a code block and a link (the OpenAI-compatible provider)."""
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "1", "HERMES_WEB_OPENAI_BASE_URL": provider.url,
                                 "HERMES_WEB_OPENAI_MODEL": "tiny"})
    session_id = server.create_session()
    image = upload_one(server, session_id, "screen.png", png_bytes())
    server.wait_run_finished(server.start_run(session_id, "What is on this screen?", [image["id"]])["run_id"])
    script = provider.script(content=[CODE_ANSWER[i:i + 9] for i in range(0, len(CODE_ANSWER), 9)])
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": script, "agent": "openai"})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    return server, session_id, body["run_id"]


SMALL_TARGETS = """() => {
    const small = [];
    const controls = document.querySelectorAll('button, a[href], select, summary, input:not([type=hidden]), [role=button]');
    for (const control of controls) {
        if (control.closest('.markdown') && control.tagName === 'A') continue;  // links inside prose
        const box = control.getBoundingClientRect();
        const style = getComputedStyle(control);
        if (box.width === 0 || box.height === 0 || style.visibility === 'hidden') continue;
        if (box.bottom <= 0 || box.right <= 0 || box.top >= innerHeight || box.left >= innerWidth) continue;
        if (box.width < 44 || box.height < 44) {
            small.push(`${control.tagName.toLowerCase()} "${control.getAttribute('aria-label') || control.textContent.trim().slice(0, 30)}" ${box.width.toFixed(0)}x${box.height.toFixed(0)}`);
        }
    }
    return small;
}"""


def scroll_through(page):
    """Every control of the transcript, screen by screen: yields after each scroll."""
    height = page.evaluate("document.getElementById('transcript').scrollHeight")
    for top in range(0, height, 600):
        page.evaluate("(top) => document.getElementById('transcript').scrollTo(0, top)", top)
        yield


def test_every_control_is_at_least_44_px_on_a_phone(rich_session, new_page):
    server, session_id, run_id = rich_session
    page = new_page(**PHONE)
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    page.evaluate("() => document.querySelectorAll('details').forEach((details) => { details.open = true; })")
    page.set_input_files("[data-testid=file-input]", files=[
        {"name": "draft.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.wait_for_selector("[data-testid=composer-attachments] [data-testid=attachment]:not(.attachment-pending)")
    small = []
    for _ in scroll_through(page):
        small += page.evaluate(SMALL_TARGETS)
    snap(page, "phone-controls")
    page.click("[data-testid=menu-button]")
    page.wait_for_function("() => document.querySelector('[data-testid=sidebar]').getBoundingClientRect().x >= 0")
    small += page.evaluate(SMALL_TARGETS)
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.body.classList.contains('drawer-open')")
    page.get_by_role("button", name="Chat settings").click()
    page.wait_for_selector("[data-testid=settings-dialog][open]")
    small += page.evaluate(SMALL_TARGETS)
    assert axe(page, "[data-testid=settings-dialog]") == []
    checked = page.evaluate("document.querySelectorAll('button, a[href], select, summary').length")
    assert checked >= 15
    assert sorted(set(small)) == []


def axe(page, context="document", rules=None) -> list:
    """axe-core's violations in ``context`` (a selector), each as ``(rule, target, summary)``."""
    page.evaluate(AXE.read_text() + "\n;undefined")  # DevTools evaluation: the page's CSP does not apply
    options = {"runOnly": {"type": "rule", "values": rules}} if rules else {
        "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}}
    result = page.evaluate(
        """async ([context, options]) => {
            const target = context === 'document' ? document : document.querySelector(context);
            const result = await axe.run(target, options);
            return result.violations.flatMap((violation) => violation.nodes.map((node) =>
                [violation.id, node.target.join(' '), node.failureSummary]));
        }""",
        [context, options],
    )
    return result


BADGE_STATES = {"idle": "Idle", "connecting": "Connecting…", "live": "Live", "reconnecting": "Reconnecting…"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_connection_badge_meets_aa_contrast_in_every_state(demo_server, new_page, scheme):
    server = demo_server
    session_id = server.create_session()
    page = new_page(color_scheme=scheme, reduced_motion="reduce")
    open_session(page, server, session_id)
    page.wait_for_selector("[data-testid=connection-state][data-state=idle]")
    # axe does see a badge below AA: the 4.46:1 it once reported
    page.evaluate("""() => {
        const label = document.querySelector('[data-testid=connection-state] .connection-label');
        label.style.color = '#6b6b76';
        label.style.background = 'rgb(234, 234, 235)';
    }""")
    if scheme == "light":
        assert [rule for rule, _, _ in axe(page, "[data-testid=connection-state]", ["color-contrast"])] == ["color-contrast"]
    page.evaluate("() => document.querySelector('[data-testid=connection-state] .connection-label').removeAttribute('style')")
    failures = {}
    for badge_state, label in BADGE_STATES.items():
        # The badge's own look per state; which state it shows when is tested elsewhere.
        page.evaluate("""([badgeState, label]) => {
            const badge = document.querySelector('[data-testid=connection-state]');
            badge.dataset.state = badgeState;
            badge.querySelector('.connection-label').textContent = label;
        }""", [badge_state, label])
        violations = axe(page, "[data-testid=connection-state]", ["color-contrast"])
        if violations:
            failures[badge_state] = violations
    assert failures == {}


def test_a_live_turn_and_a_reconnecting_badge_meet_aa_contrast(demo_server, new_page):
    """The same through the page's own states: a turn running, then the network gone."""
    server = demo_server
    session_id = server.create_session()
    page = new_page(reduced_motion="reduce")
    open_session(page, server, session_id)
    server.start_run(session_id, "Contrast while live")
    page.wait_for_selector("[data-testid=connection-state][data-state=live]")
    assert axe(page, "[data-testid=connection-state]", ["color-contrast"]) == []
    page.context.set_offline(True)
    page.wait_for_selector("[data-testid=connection-state][data-state=reconnecting]", timeout=10_000)
    assert axe(page, "[data-testid=connection-state]", ["color-contrast"]) == []
    page.context.set_offline(False)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_full_transcript_has_no_axe_violations(rich_session, new_page, scheme, device):
    server, session_id, run_id = rich_session
    options = PHONE if device == "phone" else {}
    page = new_page(color_scheme=scheme, reduced_motion="reduce", **options)
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    page.evaluate("() => document.querySelectorAll('details').forEach((details) => { details.open = true; })")
    violations = []
    for _ in scroll_through(page):
        violations += axe(page)
    if scheme == "dark" and device == "desktop":
        snap(page, "dark")
    assert sorted(set(violations)) == []


def test_every_action_has_a_name_that_says_what_it_does(rich_session, new_page):
    server, session_id, run_id = rich_session
    page = new_page()
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter((button) => !(button.getAttribute('aria-label') || '').trim())
        .map((button) => button.outerHTML.slice(0, 120))""")
    assert unnamed == []
    for name in ("Start a new chat", "Rename session", "Delete session", "Attach files", "Send message",
                 "Copy message", "Copy python code", "Export chat", "Import chat"):
        assert page.get_by_role("button", name=name).count() >= 1, name
    assert page.get_by_role("button", name="Copy message").count() == 4  # two user turns, two answers


@pytest.fixture
def branched_session(server_factory):
    """A session whose only turn has two versions: the switcher, Edit and Regenerate show."""
    server = server_factory(env={"HERMES_WEB_DEMO_DELAY_MS": "1"})
    session_id = server.create_session()
    first = server.start_run(session_id, "Name a colour")["run_id"]
    server.wait_run_finished(first)
    status, body, _ = server.api("POST", f"/api/sessions/{session_id}/runs", {"text": "Name a fruit", "replaces": first})
    assert status == 202, body
    server.wait_run_finished(body["run_id"])
    return server, session_id, body["run_id"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_branch_controls_and_the_edit_box_meet_aa_and_44_px(branched_session, new_page, scheme, device):
    server, session_id, run_id = branched_session
    options = PHONE if device == "phone" else {}
    page = new_page(color_scheme=scheme, reduced_motion="reduce", **options)
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    for name in ("Previous version", "Next version", "Edit message", "Regenerate answer"):
        assert page.get_by_role("button", name=name).is_visible(), name
    violations, small = [], []
    for _ in scroll_through(page):
        violations += axe(page)
        small += page.evaluate(SMALL_TARGETS)
    if scheme == "light" and device == "desktop":
        page.evaluate("() => document.getElementById('transcript').scrollTo(0, 0)")
        snap(page, "versions")
    page.get_by_role("button", name="Edit message").click()
    page.wait_for_selector("[data-testid=edit-form]")
    for name in ("Send edited message", "Cancel edit"):
        assert page.get_by_role("button", name=name).is_visible(), name
    violations += axe(page)
    small += page.evaluate(SMALL_TARGETS)
    if scheme == "light" and device == "phone":
        snap(page, "phone-edit")
    assert sorted(set(violations)) == []
    if device == "phone":
        assert sorted(set(small)) == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_search_results_and_the_export_menu_pass_axe_with_44_px_targets(rich_session, new_page, scheme, device):
    server, session_id, run_id = rich_session
    options = PHONE if device == "phone" else {}
    page = new_page(color_scheme=scheme, reduced_motion="reduce", **options)
    open_session(page, server, session_id)
    wait_status(page, run_id, "completed")
    if device == "phone":
        page.click("[data-testid=menu-button]")
        page.wait_for_function("() => document.querySelector('[data-testid=sidebar]').getBoundingClientRect().x >= 0")
    page.get_by_role("searchbox", name="Search chats").fill("screen")
    page.wait_for_selector("[data-testid=search-result] mark")
    assert page.locator("[data-testid=search-status]").text_content().endswith("match") or \
        page.locator("[data-testid=search-status]").text_content().endswith("matches")
    violations = axe(page)
    small = page.evaluate(SMALL_TARGETS) if device == "phone" else []
    page.get_by_role("searchbox", name="Search chats").fill("nothing like it")
    page.wait_for_selector("[data-testid=search-status]:has-text('No matches')")
    violations += axe(page)
    if device == "phone":
        page.keyboard.press("Escape")  # clears the search; the next closes the drawer
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.body.classList.contains('drawer-open')")
    page.get_by_role("button", name="Export chat").click()
    page.wait_for_selector("[data-testid=export-menu]:visible")
    violations += axe(page)
    if device == "phone":
        small += page.evaluate(SMALL_TARGETS)
    assert sorted({tuple(violation) for violation in violations}) == []
    assert sorted(set(small)) == []
