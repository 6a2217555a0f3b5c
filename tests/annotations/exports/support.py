"""Helpers of the export tests: the export's URL with a query, and a streamed response's body."""
from django.urls import reverse


def export_url(project, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("api-project-export", args=[project.pk]) + (f"?{query}" if query else "")

def body(response) -> str:
    return b"".join(response.streaming_content).decode()
