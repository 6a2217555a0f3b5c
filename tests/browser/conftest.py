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


# Playwright's sync API runs one instance per thread: modules elsewhere that import these fixtures (the
# integration tests' manager journey) get the same Chromium, closed when its last user is done.
_shared: dict = {"users": 0}


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the session, whichever module's copy of this fixture asks first."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium).")
    if not _shared["users"]:
        _shared["playwright"] = sync_playwright().start()
        _shared["browser"] = _shared["playwright"].chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    _shared["users"] += 1
    try:
        yield _shared["browser"]
    finally:
        _shared["users"] -= 1
        if not _shared["users"]:
            _shared.pop("browser").close()
            _shared.pop("playwright").stop()


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
