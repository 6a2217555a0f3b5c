"""The export page: choose format, mode and options, download the file the REST export streams, copy its curl."""
from __future__ import annotations

import math
import shlex
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from labelhub.throttling import ScopedUserRateThrottle

from .. import selectors
from ..view_helpers import project_or_404
from . import formats
from .apis import ProjectExportApi, export_response

FORMAT_NAMES = {
    "jsonl": "JSON Lines: one JSON object a line",
    "csv": "CSV: a header row, then one row each (spreadsheet formulas neutralised)",
    "json": "JSON: one array of the same objects",
    "labelstudio": "Label Studio tasks: a JSON array to import into Label Studio",
}
MODE_NAMES = {
    "final": "Final labels: one row per labeled item (a reviewer's label, else the majority)",
    "all": "All annotations: one row per expert label",
}
FIELD_NAMES = {"format": "Format", "mode": "Mode", "since": "Changed since",
               "include_prediction": "Include the model's prediction", "include_audit": "Include audit flags"}


def _errors(errors: dict) -> str:
    """The serializer's errors as one sentence a person reads: each field by its name on the page."""
    return " ".join(f"{FIELD_NAMES.get(field, field)}: {' '.join(map(str, messages))}"
                    for field, messages in errors.items())


def _api_query(query: dict) -> dict[str, str]:
    """The validated options as the API's query string spells them, defaults left out but format and mode."""
    params = {"format": query["format"], "mode": query["mode"]}
    if query.get("since") is not None:
        params["since"] = query["since"].isoformat()
    for flag in ("include_prediction", "include_audit"):
        if query.get(flag):
            params[flag] = "true"
    return params


def _curl(request: HttpRequest, project, query: dict) -> str:
    url = request.build_absolute_uri(reverse("api-project-export", args=[project.pk]))
    filename = f"{project.slug}-{query['mode']}.{formats.EXTENSIONS[query['format']]}"
    return (f'curl -fsS -H "Authorization: Token $LABELHUB_TOKEN" -o {shlex.quote(filename)} '
            f'"{url}?{urlencode(_api_query(query))}"')


def _throttled(request: HttpRequest) -> str:
    """Why a download now would exceed the export rate shared with the API, or "" when it may go ahead."""
    throttle = ScopedUserRateThrottle()
    if throttle.allow_request(request, ProjectExportApi):
        return ""
    minutes = math.ceil((throttle.wait() or 60) / 60)
    return (f"You have started {throttle.num_requests} exports of this rate's period already "
            f"({throttle.rate}, this page and the API together): "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}.")


@login_required
@require_GET
def project_export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The export form (managers, like the REST export); ``download`` answers with the export file itself."""
    project = project_or_404(request, project_id, "manager")
    # A field left blank (the form always sends since) asks for nothing.
    asked = {key: value for key, value in request.GET.dict().items() if value.strip()}
    serializer = ProjectExportApi.InputSerializer(data=asked)
    error, status = "", 200
    if not serializer.is_valid():
        error, status = _errors(serializer.errors), 400
        # The form shows the choices that were valid, and the field that was not as it was typed.
        serializer = ProjectExportApi.InputSerializer(data={k: v for k, v in asked.items() if k not in serializer.errors})
        serializer.is_valid(raise_exception=True)
    elif "download" in request.GET:
        error = _throttled(request)
        if not error:
            return export_response(request, project, serializer.validated_data)
        status = 429
    query = serializer.validated_data
    since = query.get("since")
    return render(request, "annotations/export.html", {
        "project": project,
        "is_manager": True,
        "counts": selectors.project_counts(project),
        "error": error,
        "formats": FORMAT_NAMES,
        "modes": MODE_NAMES,
        "query": query,
        "since_value": (timezone.localtime(since).strftime("%Y-%m-%dT%H:%M:%S") if since
                        else asked.get("since", "")[:40]),
        "time_zone": settings.TIME_ZONE,
        "curl": "" if status == 400 else _curl(request, project, query),
    }, status=status)
