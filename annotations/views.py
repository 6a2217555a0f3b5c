"""Server-rendered pages of projects and item media."""
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labelhub.api import NotFound

from . import selectors
from .models import Item


def _project_or_404(request: HttpRequest, project_id: int, min_role: str = "annotator"):
    try:
        return selectors.project_get_for_user(request.user, project_id, min_role=min_role)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    return render(request, "annotations/project_list.html", {"projects": selectors.project_list_for_user(request.user)})


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_or_404(request, project_id)
    role = selectors.membership_role(request.user, project)
    return render(
        request,
        "annotations/project_detail.html",
        {
            "project": project,
            "counts": selectors.project_counts(project),
            "labels": selectors.project_labels(project),
            "can_import": selectors.ROLE_RANK[role] >= selectors.ROLE_RANK["manager"],
        },
    )


@login_required
@require_GET
def item_media(request: HttpRequest, item_id: int, variant: str) -> FileResponse:
    """Serve an item's image or thumbnail to members of its project only."""
    item = get_object_or_404(Item.objects.only("id", "project_id", "image", "thumbnail"), pk=item_id)
    _project_or_404(request, item.project_id)
    field = item.thumbnail if variant == "thumbnail" and item.thumbnail else item.image
    if not field:
        raise Http404("This item has no image.")
    response = FileResponse(field.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response
