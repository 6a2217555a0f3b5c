"""The OpenAPI document describes every endpoint without drf-spectacular warnings."""
import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    # --fail-on-warn turns an ambiguous component (two serializers of one name) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/projects/{project_id}/queue/next:" in text
    assert "/api/projects/{project_id}/queue/progress:" in text
    for path in ("/api/projects:", "/api/projects/{project_id}:", "/api/projects/{project_id}/labels:",
                 "/api/projects/{project_id}/items:", "/api/projects/{project_id}/annotations:",
                 "/api/projects/{project_id}/export:"):
        assert path in text
    # Every operation documents the JSON error body.
    assert "$ref: '#/components/schemas/Error'" in text
