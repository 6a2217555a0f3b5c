"""The OpenAPI document describes every endpoint without drf-spectacular warnings, and bounds every value."""
import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator


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


# Query parameters the paginators read and bound themselves (page_size is capped at the maximum; a
# cursor that does not decode is a 400), so the document need not give a bound.
PAGINATION_PARAMETERS = {"cursor", "page_size"}
FORMATS_WITH_A_SHAPE = {"uuid", "date-time", "date", "binary", "uri"}


def _unbounded(schema: dict, components: dict, where: str) -> list[str]:
    """Where a request value of this schema has no bound: integers without a maximum, strings without a
    maximum length (or pattern, enum or format), arrays without a maximum number of items."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("readOnly"):
        return []
    found = []
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            found += _unbounded(part, components, where)
    kind = schema.get("type")
    if kind == "integer" and "maximum" not in schema:
        found.append(f"{where}: an integer without a maximum")
    if kind == "string" and not ({"maxLength", "pattern", "enum"} & set(schema)) and (
        schema.get("format") not in FORMATS_WITH_A_SHAPE
    ):
        found.append(f"{where}: a string without a maximum length")
    if kind == "array":
        if "maxItems" not in schema:
            found.append(f"{where}: an array without a maximum number of items")
        found += _unbounded(schema.get("items", {}), components, f"{where}[]")
    for name, part in schema.get("properties", {}).items():
        found += _unbounded(part, components, f"{where}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _unbounded(schema["additionalProperties"], components, f"{where}.*")
    return found


@pytest.mark.django_db
def test_every_value_a_request_sends_has_a_bound():
    """An integer without a maximum reached SQLite's driver as an OverflowError (a 500), a string without a length
    the database; a new field must say its bound (max_value, max_length, max_length of a list)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path" and parameter["name"] not in PAGINATION_PARAMETERS:
                    found += _unbounded(parameter.get("schema", {}), components, f"{where} ?{parameter['name']}")
            for media_type, body in operation.get("requestBody", {}).get("content", {}).items():
                if media_type in ("application/json", "multipart/form-data"):
                    found += _unbounded(body["schema"], components, f"{where} {media_type}")
    assert not sorted(set(found)), "\n".join(sorted(set(found)))
