"""An uploaded screenshot shows as a chip with a preview, at once and after reloads."""

import struct
import zlib

from tests.browser.conftest import snap
from tests.browser.ui import open_session, send_message, wait_status
from tests.support import request

PREVIEW = "[data-testid=message-user] [data-testid=attachment-preview]"


def png_bytes(width=48, height=32) -> bytes:
    """A real PNG (an indigo rectangle) so the browser can decode and lay it out."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((79, 70, 229)) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def preview_loaded(page) -> bool:
    page.wait_for_selector(PREVIEW)
    page.wait_for_function(
        "(selector) => { const img = document.querySelector(selector); return img && img.complete; }", arg=PREVIEW)
    return page.evaluate("(selector) => document.querySelector(selector).naturalWidth", PREVIEW) == 48


def test_an_uploaded_screenshot_preview_survives_reload_and_switching(demo_server, new_page):
    server = demo_server
    other = server.create_session()
    session_id = server.create_session()
    page = new_page()
    open_session(page, server, session_id)
    page.set_input_files("[data-testid=file-input]", files=[
        {"name": "screenshot.png", "mimeType": "image/png", "buffer": png_bytes()}])
    chip = page.locator("[data-testid=composer-attachments] [data-testid=attachment]")
    chip.wait_for()
    page.wait_for_selector("[data-testid=composer-attachments] [data-testid=attachment]:not(.attachment-pending)")
    assert "attachment-error" not in (chip.get_attribute("class") or ""), chip.inner_text()

    run_id = send_message(page, "What is in this screenshot?")
    assert preview_loaded(page)
    assert page.locator("[data-testid=message-user] .attachment-name").inner_text() == "screenshot.png"
    wait_status(page, run_id, "completed")
    snap(page, "attachment")
    url = page.get_attribute(PREVIEW, "src")
    assert url.startswith(f"/api/sessions/{session_id}/attachments/")
    status, body, _ = request(server.url, "GET", url)
    assert status == 200 and body == png_bytes()

    page.reload()
    assert preview_loaded(page)
    page.click(f"[data-testid=session-item][data-session-id='{other}'] a")
    page.wait_for_url(f"**/s/{other}")
    page.wait_for_selector("[data-testid=welcome]:visible")
    page.go_back()
    page.wait_for_url(f"**/s/{session_id}")
    assert preview_loaded(page)
    assert page.get_attribute(PREVIEW, "src") == url
