"""Headless Chromium (Debian's package) driven by Playwright's sync API against pytest-django's live server.

The live server runs in a thread of the test process; tests use ``q_sync`` so the Braze sync runs
inline while the browser works. Without Chromium the tests are skipped, unless REQUIRE_SERVICES is
set: then they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCRATCH = Path(tempfile.gettempdir()) / f"loyaltysync-screenshots-{os.getpid()}"
PASSWORD = "browser-test-password-1"


def _require_chromium() -> None:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("REQUIRE_SERVICES", "") not in ("", "0"):
        pytest.fail(f"{reason}; REQUIRE_SERVICES is set")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
    _require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between
    # browser steps are still plain synchronous code.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def browser_admin(transactional_db, django_user_model, settings, sandbox_endpoint):
    settings.AXES_ENABLED = False
    return django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)


@pytest.fixture
def logged_in(page, live_server, browser_admin):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(f"{live_server.url}/admin/braze_integration/connection/")
    page.click("#toggle-nav-sidebar")  # more room for the screens (remembered for the session)
    return page


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Take a screenshot of a main screen; it replaces the one in docs/screenshots only when
    UPDATE_SCREENSHOTS=1 (so an ordinary test run leaves the working tree alone)."""
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS", "") not in ("", "0") else SCRATCH
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    assert path.stat().st_size < 300_000, f"{path} is larger than 300 KB"
    return path
