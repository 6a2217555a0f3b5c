"""Playwright fixtures: Debian's Chromium (never a downloaded browser) against pytest-django's live server."""
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop running in this thread; the ORM calls the tests make
# around it are still plain synchronous code.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 720}
TABLET = {"width": 820, "height": 1180}


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught errors of the page's scripts; a test asserts it stays empty."""
    return []


@pytest.fixture
def page(browser, live_server, js_errors) -> Iterator:
    """A fresh browser context (own cookies) at desktop size, with the live server as base URL."""
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    """The git-ignored folder for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
