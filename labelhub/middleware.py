"""Middleware: a database lock timeout becomes a 503, never a 500; a NUL in a page's query or form is a 400."""
import sys
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict
from django.template.loader import render_to_string
from django.utils.html import escape
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


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MESSAGE = "The request's {where} contains a NUL character (\\u0000), which is not text; remove it and try again."


def _has_nul(data: QueryDict) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in data.lists())


class RejectNulMiddleware:
    """Answer 400 when a page's query parameter or form field (name or value; not a file's content) holds a NUL.

    PostgreSQL refuses NUL in text, so such a value failed wherever it reached the database (a
    page's free-text field, the admin's search). Django's form fields refuse it one by one; this
    refuses it for every page at once. The API's fields are DRF's, which refuse it with the
    field's name, and its JSON bodies are checked by labelhub.parsers.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            query = request.META.get("QUERY_STRING", "")
            if ("%00" in query or "\x00" in query) and _has_nul(request.GET):
                return self._refuse("query string")
            if request.method == "POST" and request.content_type in FORM_TYPES and _has_nul(request.POST):
                return self._refuse("form")
        return self.get_response(request)

    @staticmethod
    def _refuse(where: str) -> HttpResponse:
        # A page of one paragraph, which the labeling and review pages' scripts also show as an error fragment.
        return HttpResponseBadRequest(
            '<!doctype html><html lang="en"><title>Bad request</title>'
            f'<p class="label-error review-error" data-kind="error">{escape(MESSAGE.format(where=where))}</p></html>'
        )
