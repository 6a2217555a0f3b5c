"""Browser steps many page tests share."""
from urllib.parse import urlsplit

from django.urls import reverse
from playwright.sync_api import Page


def log_in(page: Page, username: str, password: str, next_url: str) -> None:
    """Log in through the login page and wait until ``next_url``'s page has loaded.

    By path: a page may put its state in the query string as soon as it loads (the review page's ?item=).
    """
    page.goto(f"{reverse('login')}?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    path = urlsplit(next_url).path
    page.wait_for_url(lambda url: urlsplit(url).path == path)
