"""Middleware: a database lock timeout becomes a 503 page (or JSON under /api/), never a 500."""
import sys
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as default_server_error

from labelhub.api import BUSY_DETAIL, BUSY_RETRY_AFTER_SECONDS, busy_headers, database_busy


def busy_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: JSON under /api/, a readable page elsewhere (rendered without the database)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": BUSY_DETAIL}, status=503, headers=busy_headers())
    html = render_to_string("503.html", {"retry_after": BUSY_RETRY_AFTER_SECONDS})
    return HttpResponse(html, status=503, headers=busy_headers())


class DatabaseBusyMiddleware:
    """Answer a view that timed out waiting for a database lock with 503 and Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return busy_response(request) if database_busy(exception) else None


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 handler: a lock timeout outside a view (a middleware's write) still answers 503."""
    exc = sys.exc_info()[1]
    if exc is not None and database_busy(exc):
        return busy_response(request)
    return default_server_error(request)
