"""API plumbing: the exception handler (domain errors become 4xx JSON, a busy database 503), paging, query checks."""
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from rest_framework import exceptions, pagination, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


# The largest id a client may send: keys are 64-bit on every database, and SQLite's driver raises
# (a 500) on a larger integer where PostgreSQL would only find nothing.
ID_MAX = 2**63 - 1
# The largest version number (model versions are numbered in a 32-bit column).
NUMBER_MAX = 2**31 - 1


class DomainError(Exception):
    """A business rule was broken; the message is shown to the user as is."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT


# How long a client should wait before trying again after a lock timeout (503 Retry-After).
BUSY_RETRY_AFTER_SECONDS = 5
BUSY_DETAIL = (
    "The database is busy with other writes (such as a large import) and this request timed out waiting for it; "
    "nothing was changed. Try again in a few seconds."
)
# PostgreSQL's SQLSTATEs of a wait that timed out or lost a deadlock: lock_not_available (lock_timeout),
# query_canceled (statement_timeout), deadlock_detected. Retrying later succeeds.
_PG_BUSY = frozenset({"55P03", "57014", "40P01"})
_SQLITE_BUSY = ("database is locked", "database table is locked", "database schema is locked")


def database_busy(exc: BaseException) -> bool:
    """Whether an error is the database timing out on a lock (SQLite's "database is locked", PostgreSQL's timeouts)."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in _PG_BUSY:
        return True
    message = str(exc).lower()
    return any(text in message for text in _SQLITE_BUSY)


def busy_headers() -> dict[str, str]:
    return {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map domain and Django errors to JSON responses, a lock timeout to 503; leave the rest to DRF."""
    if database_busy(exc):
        return Response({"detail": BUSY_DETAIL}, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=busy_headers())
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"detail": exc.message}
        if exc.details is not None:
            body["errors"] = exc.details
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            return Response({"detail": "Invalid input.", "errors": exc.message_dict}, status=400)
        return Response({"detail": " ".join(exc.messages)}, status=400)
    if isinstance(exc, PermissionDenied):
        return Response({"detail": str(exc) or "You do not have permission to do this."}, status=403)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": str(exc)}, status=413)
    if isinstance(exc, SuspiciousOperation):
        # Django's limits on a form body (too many fields or files) met while DRF parsed it: JSON like every answer.
        return Response({"detail": str(exc)}, status=400)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": "Invalid input.", "errors": response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {"detail": " ".join(str(m) for m in response.data)}
    return response


class CursorPagination(pagination.CursorPagination):
    """Opaque ``cursor`` links ordered by id: stable while rows are added, one indexed range scan per page."""

    ordering = "id"
    page_size_query_param = "page_size"
    cursor_query_description = "The cursor of a page: take it from the previous page's next/previous link."

    page_size = 100
    max_page_size = 1000

    def get_page_size(self, request) -> int:
        # Read at request time, so that a deployment's (or a test's) settings apply.
        self.page_size, self.max_page_size = settings.LABELHUB_API_PAGE_SIZE, settings.LABELHUB_API_MAX_PAGE_SIZE
        return super().get_page_size(request)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            # A cursor the client mangled is bad input, not a missing page.
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None


def query_validated(request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """Validate the query parameters (a plain dict: absent booleans stay absent instead of turning False)."""
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


ERROR_RESPONSES = {
    "400": "Bad input: `detail` says why, `errors` names the fields.",
    "401": "No or bad credentials.",
    "403": "Not allowed to do this.",
    "404": "Not found, or not yours to see.",
    "413": "The request body is larger than the server takes (a JSON body: API_JSON_MAX_BYTES).",
    "429": "Too many requests: retry after the `Retry-After` header's seconds.",
    "503": "The database was busy (a lock wait timed out); nothing was changed: retry after `Retry-After` seconds.",
}


def error_responses_hook(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: document the JSON error body on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "properties": {
            "detail": {"type": "string", "description": "What went wrong, in a sentence."},
            "errors": {"type": "object", "additionalProperties": {}, "description": "Field errors, by field."},
        },
        "required": ["detail"],
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for code, description in ERROR_RESPONSES.items():
                operation.setdefault("responses", {}).setdefault(code, {"description": description, "content": error})
    return result


def api_not_found(request, exception=None):
    """404 for URLs that match no route: JSON under /api/, the normal page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
