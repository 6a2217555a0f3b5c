"""Request bodies and queries nothing can store or parse safely: a clear 4xx, never a 500.

The API's JSON parser bounds size and nesting and refuses NUL and lone surrogates in any string;
pages refuse a NUL in their query strings and forms (labelhub/middleware.py).
"""
import io
import json
import re

import pytest
from django.urls import reverse
from rest_framework.exceptions import ParseError
from rest_framework.test import APIClient

from annotations.models import Project
from labelhub.parsers import JSON_MAX_DEPTH, JSONParser, PayloadTooLarge
from learner.models import TrainingRun
from tests.factories import ItemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client


def _raw(api: APIClient, method: str, url: str, body: bytes, content_type: str = "application/json"):
    return api.generic(method, url, body, content_type=content_type)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# The parser on its own


def test_nesting_is_bounded_and_measured_without_recursion():
    parse = JSONParser().parse
    assert parse(io.BytesIO(_nested(JSON_MAX_DEPTH))) == json.loads(_nested(JSON_MAX_DEPTH))
    inside_an_object = b'{"a": ' + _nested(JSON_MAX_DEPTH - 1) + b"}"
    assert parse(io.BytesIO(inside_an_object))["a"] == json.loads(_nested(JSON_MAX_DEPTH - 1))
    for body in (_nested(JSON_MAX_DEPTH + 1), b'{"a": ' + _nested(JSON_MAX_DEPTH) + b"}", _nested(50_000)):
        with pytest.raises(ParseError, match=f"JSON nested deeper than {JSON_MAX_DEPTH} levels."):
            parse(io.BytesIO(body))


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"name": "a\\u0000b"}', "a NUL character"),
        (b'{"name": "a\\ud800b"}', "a lone surrogate (\\ud800)"),
        (b'{"a\\udfff": 1}', "a lone surrogate (\\udfff)"),  # a key
        (b'{"items": [{"metadata": {"deep": ["ok", "\\uDC00"]}}]}', "a lone surrogate (\\udc00)"),
        (b'"\\u0000"', "a NUL character"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_anywhere_in_the_body(body, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        JSONParser().parse(io.BytesIO(body))


def test_text_with_escapes_that_are_text_passes():
    body = json.dumps({"name": "café 😀", "note": "a\\u0000 written out", "x": "\u00e9"}).encode()
    assert b"\\ud83d\\ude00" in body  # an emoji as clients that escape non-ASCII send it: a surrogate pair
    assert JSONParser().parse(io.BytesIO(body)) == {"name": "café 😀", "note": "a\\u0000 written out", "x": "é"}


def test_a_charset_that_decodes_to_a_surrogate_directly_is_checked_too():
    context = {"encoding": "raw_unicode_escape"}
    with pytest.raises(ParseError, match="a lone surrogate"):
        JSONParser().parse(io.BytesIO(b'{"name": "a\\ud800b"}'), parser_context=context)


def test_a_body_over_the_limit_is_413(settings):
    settings.LABELHUB_API_JSON_MAX_BYTES = 1000
    assert JSONParser().parse(io.BytesIO(json.dumps({"x": "y" * 980}).encode())) == {"x": "y" * 980}
    with pytest.raises(PayloadTooLarge, match="larger than 1,000 bytes"):
        JSONParser().parse(io.BytesIO(json.dumps({"x": "y" * 1000}).encode()))


# Through the API


@pytest.mark.parametrize("name, method", [("api-queue-next", "POST"), ("api-project", "PATCH"), ("api-predict", "POST")])
def test_a_body_nested_50000_deep_is_a_400(api, text_project, name, method):
    response = _raw(api, method, reverse(name, args=[text_project.pk]), _nested(50_000))
    assert response.status_code == 400
    assert response.json() == {"detail": f"JSON nested deeper than {JSON_MAX_DEPTH} levels."}


def test_strings_nothing_can_store_are_a_400_and_change_nothing(api, text_project):
    url = reverse("api-project", args=[text_project.pk])
    for body in (b'{"instructions": "a\\ud800b"}', b'{"instructions": "a\\u0000b"}'):
        response = _raw(api, "PATCH", url, body)
        assert response.status_code == 400 and response.json()["detail"].startswith("JSON strings may not contain")
    assert Project.objects.get(pk=text_project.pk).instructions == ""
    emoji = _raw(api, "PATCH", url, json.dumps({"instructions": "Be kind 😀"}).encode())
    assert emoji.status_code == 200 and emoji.json()["instructions"] == "Be kind 😀"


def test_a_json_body_over_the_limit_is_a_413(api, text_project, settings):
    settings.LABELHUB_API_JSON_MAX_BYTES = 10_000
    url = reverse("api-project", args=[text_project.pk])
    response = _raw(api, "PATCH", url, json.dumps({"instructions": "x" * 10_000}).encode())
    assert response.status_code == 413
    assert response.json() == {"detail": "The JSON body is larger than 10,000 bytes."}


# Pages


@pytest.mark.parametrize(
    "name, field",
    [("project-retrain", "note"), ("model-version-promote", "reason"), ("experiment-stop", "reason")],
)
def test_a_nul_in_a_pages_form_is_a_400_page(client, text_project, manager, name, field):
    client.force_login(manager)
    args = [text_project.pk] if name == "project-retrain" else [text_project.pk, 1]
    response = client.post(reverse(name, args=args), {field: "a\x00b"})
    assert response.status_code == 400
    assert "form contains a NUL character" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_a_nul_in_a_query_string_is_a_400_page_and_a_written_out_one_is_not(client, text_project, manager):
    ItemFactory(project=text_project)
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)
    search = reverse("admin:annotations_item_changelist")
    refused = client.get(search + "?q=%00")  # PostgreSQL refuses NUL in a query: the admin's search failed
    assert refused.status_code == 400 and "query string contains a NUL character" in refused.content.decode()
    assert client.get(search + "?q=%2500").status_code == 200  # the text "%00"
    client.force_login(manager)
    assert client.get(reverse("review", args=[text_project.pk]) + "?filter=a%00").status_code == 400
