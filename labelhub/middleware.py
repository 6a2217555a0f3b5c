"""Request checks before any page's view: query strings and form fields with NUL characters are a 400."""
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.utils.html import escape

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
