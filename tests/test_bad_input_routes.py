"""Every route meets hostile values and answers each with a clear 4xx, never a 5xx.

CASES lists, per URL name, the bad inputs its view takes (ids beyond 64 bits, numbers beyond any
float, strings beyond their bound, NUL and lone surrogates, dates out of range); every route also
gets the generic cases: each integer in its path at 2^63 and 10^30, and for the API's JSON
methods a body nested 50,000 deep, strings with NUL or a lone surrogate, and a body over
API_JSON_MAX_BYTES; for pages a NUL in the query string and in the form. A URL without an entry
in CASES fails the test, so a new endpoint must list its bad inputs here. The world, the URL
arguments and who may call what come from tests/test_permissions.py; requests are made as staff,
who may call everything.
"""
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from tests.test_permissions import RULES, World, _patterns, world  # noqa: F401 (the fixture)

pytestmark = pytest.mark.django_db

ID_OVER = 2**63  # one past the largest 64-bit key
HUGE = 10**30
BIG_INT = 10**400  # a JSON integer no float holds
LONG = "x" * 10_000
NUL = "a\x00b"
DEEP = b"[" * 50_000 + b"]" * 50_000
# JSON text with a lone surrogate and a NUL as escapes (json.dumps would escape them the same way).
BAD_STRINGS = b'{"label": "a\\ud800b", "note": "a\\u0000b", "x\\udfff": 1}'
JSON_MAX_BYTES = 200_000  # set for these tests; DEEP (100,000 bytes) stays below it
LABEL_ROWS = {"labels-TOTAL_FORMS": "2", "labels-INITIAL_FORMS": "0", "labels-0-name": "a", "labels-1-name": "b"}
OUT_OF_RANGE_DATE = "9999-12-31T23:59:59-14:00"  # in UTC: past the year 9999


@dataclass(frozen=True)
class Case:
    """One hostile request: a JSON (API) or form (page) body, or raw bytes; query; URL arguments to replace."""

    method: str
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    query: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)
    expect: tuple[int, ...] = (400,)


def post(body: Any = None, **kwargs: Any) -> Case:
    return Case("POST", body=body, **kwargs)


def patch(body: Any) -> Case:
    return Case("PATCH", body=body)


def get(query: dict[str, Any], expect: tuple[int, ...] = (400,)) -> Case:
    return Case("GET", query=query, expect=expect)


LABEL_CHOICE = [post({"label_id": ID_OVER}), post({"label_id": BIG_INT}), post({"label_id": -1}), post({"label": LONG})]
TOO_BIG_SETTINGS = {
    "lease_ttl_seconds": 10**12, "retrain_interval_minutes": 2**31 - 1, "retrain_every_n_labels": 2**40,
    "degradation_window": 2**40, "drift_threshold": 1e300, "overlap": BIG_INT, "gate_min_audit": HUGE,
    "gate_min_audit_first": ID_OVER, "audit_share": 2.0, "instructions": "x" * 30_000, "name": LONG,
}
LABEL_FIELDS = [{"order": 2**62}, {"order": BIG_INT}, {"name": LONG}, {"shortcut": "ab"}, {"color": LONG}]

# url name → the bad inputs its view takes beyond its path (generic cases are added to each).
CASES: dict[str, list[Case]] = {
    # Accounts and API documentation
    "favicon": [get({"x": NUL})],
    "login": [post({"username": LONG, "password": LONG}, expect=(200,)), get({"next": NUL})],
    "logout": [post({"next": NUL})],
    "api-schema": [get({"format": NUL, "lang": LONG}, expect=(200, 404))],
    "api-docs": [get({"format": NUL}, expect=(200, 404))],
    # Projects, import, media
    "home": [get({"page": NUL})],
    "project-detail": [],
    "item-media": [get({"sig": LONG}, expect=(200,)), Case("GET", path={"variant": LONG}, expect=(200,))],
    "project-import": [post({"files": NUL})],
    "import-job-panel": [],
    "api-import-create": [
        post({"file": NUL}, content_type="multipart/form-data"),
        post(raw=b'{"external_id": 1' + b"0" * 5000 + b', "text": "x"}\n', content_type="application/x-ndjson",
             expect=(415,)),
    ],
    "api-import-detail": [],
    "api-token": [post({"action": NUL})],
    # API clients (their accounts and tokens)
    "project-clients": [
        post({"action": "create", "name": LONG}, expect=(200,)), post({"action": LONG}, expect=(200,)),
        post({"action": "token", "client_id": str(ID_OVER)}, expect=(200,)),
        post({"action": "remove", "client_id": "9" * 5000}, expect=(200,)),
    ],
    "api-clients": [post({"name": LONG}), post({"name": "not a name!"}), post({"name": ""})],
    # Members and invitations: a page answers a refused form with its status and a message
    # The items browser, an item's page and an expert's own labels
    "project-items": [
        get({"conf_min": "-1"}), get({"conf_min": "0.9", "conf_max": "0.1"}), get({"label": str(ID_OVER)}),
        get({"q": LONG}), get({"q": NUL}), get({"meta": "=x"}), get({"meta": ["a=1"] * 50}), get({"sort": LONG}),
        get({"page": "9" * 5000}, expect=(200, 400)), get({"annotator": "1e400"}),
    ],
    "project-item": [get({"page": LONG}, expect=(200, 400))],
    "project-item-correct": [post({"annotation_id": str(ID_OVER), "label_id": "1"}, expect=(400, 404)),
                             post({"annotation_id": "1", "label_id": "9" * 5000}, expect=(400, 404)),
                             post({"annotation_id": "1", "label_id": "1", "note": LONG}, expect=(400, 404))],
    "my-labels": [get({"page": "9" * 5000}, expect=(200, 400))],
    "my-label-change": [post({"label_id": str(ID_OVER)}, expect=(400, 404)),
                        post({"label_id": "1", "page": "9" * 5000}, expect=(302, 400, 404))],
    "project-members": [
        post({"action": "add", "user": LONG, "role": "annotator"}), post({"action": LONG}),
        post({"action": "add", "user": "nobody", "role": LONG}),
        post({"action": "invite", "email": LONG + "@example.org", "role": "annotator"}),
        post({"action": "invite", "email": "a@example.org", "role": "client"}),
        post({"action": "role", "membership_id": str(ID_OVER), "role": "manager"}, expect=(404,)),
        post({"action": "remove", "membership_id": "9" * 5000}, expect=(404,)),
        post({"action": "revoke", "invitation_id": "-1"}, expect=(404,)),
    ],
    # Making and setting up a project: a refused form is the page again with 400; a label's change is a message
    "project-new": [
        post({"name": LONG, "kind": "text", **LABEL_ROWS}), post({"name": "P", "kind": LONG, **LABEL_ROWS}),
        post({"name": "P", "kind": "text", "audit_share": "1e400", **LABEL_ROWS}),
        post({"name": "P", "kind": "text", "labels-TOTAL_FORMS": str(HUGE), "labels-INITIAL_FORMS": "0"}),
        post({"name": "P", "kind": "text", **LABEL_ROWS, "labels-0-color": LONG}),
    ],
    "project-settings": [
        post({"name": LONG}), post({"name": "P", "audit_share": "1e400"}), post({"name": "P", "overlap": str(HUGE)}),
    ],
    "project-label-add": [post({"name": LONG, "color": "#123456"}), post({"name": "x", "color": LONG}),
                          post({"name": "x", "color": "#123456", "order": str(HUGE)})],
    "project-label-change": [
        post({"action": LONG}, expect=(302,)), post({"action": "merge", "into": "9" * 5000}, expect=(302,)),
        post({"action": "save", "name": LONG, "color": "#123456"}, expect=(302,)),
    ],
    "invitation-accept": [
        Case("GET", path={"token": LONG}, expect=(404,)), Case("GET", path={"token": "a.b"}, expect=(404,)),
        post({"action": LONG}), post({"action": "register", "username": LONG, "password": LONG}),
    ],
    "api-client": [],
    "api-client-token": [],
    "api-projects": [post({"name": "P", "slug": "p", "kind": "text", key: value})
                     for key, value in TOO_BIG_SETTINGS.items()] + [post({"name": "P", "slug": LONG, "kind": "x"})],
    "api-project": [patch({key: value}) for key, value in TOO_BIG_SETTINGS.items()],
    "api-labels": [post({"name": "new", **fields}) for fields in LABEL_FIELDS],
    "api-label": [patch(fields) for fields in LABEL_FIELDS],
    "api-items": [get({"page_size": BIG_INT}, expect=(200,)), get({"cursor": LONG})],
    "api-annotations": [
        get({"updated_since": OUT_OF_RANGE_DATE}), get({"updated_since": "0001-01-01T00:00:00+14:00"}),
        get({"annotator": LONG}), get({"label": LONG}), get({"audit": LONG}), get({"page_size": -1}, expect=(200,)),
    ],
    "api-project-export": [get({"since": OUT_OF_RANGE_DATE}), get({"format": LONG}), get({"mode": NUL})],
    "project-export": [get({"since": OUT_OF_RANGE_DATE, "download": "1"}), get({"format": LONG, "download": "1"}),
                       get({"mode": NUL}), get({"include_audit": LONG}), get({"since": LONG})],
    # Labeling page and queue
    "label": [get({"x": NUL})],
    "label-next": [post({"exclude": [LONG]}), post({"exclude": NUL})],
    "label-undo": [post({"x": NUL})],
    "label-submit": [post({"label_id": str(ID_OVER)}), post({"label_id": "9" * 5000}), post({"label_id": "-1"})],
    "label-skip": [post({"x": NUL}), post({"reason": LONG})],
    "label-renew": [post({"x": NUL})],
    "label-release": [post({"x": NUL})],
    "api-queue-next": [post({"exclude": [LONG]}), post({"exclude": ["00000000-0000-0000-0000-000000000000"] * 101})],
    "api-queue-progress": [],
    "api-queue-undo": [],
    "api-lease-submit": [*LABEL_CHOICE, post({"label_id": 1, "time_spent_ms": ID_OVER})],
    "api-lease-skip": [post({"reason": LONG}), post({"reason": NUL}), post(["a list"])],
    "api-lease-release": [],
    "api-lease-renew": [],
    # Review
    "review": [get({"after": str(BIG_INT), "item": "-5", "filter": LONG}, expect=(200,)), get({"filter": NUL})],
    "review-item": [get({"filter": NUL})],
    "review-resolve": [post({"label_id": str(ID_OVER)}), post({"label_id": "9" * 5000})],
    "review-correct": [post({"label_id": str(ID_OVER)}), post({"label_id": "1", "note": LONG})],
    "agreement": [],
    "api-review-items": [get({"filter": LONG}), get({"cursor": LONG}, expect=(400, 404)),
                         get({"page_size": BIG_INT}, expect=(200,))],
    "api-agreement": [],
    "api-item-resolve": LABEL_CHOICE,
    "api-annotation-correct": [*LABEL_CHOICE, post({"label_id": 1, "note": LONG})],
    "api-item-gold": LABEL_CHOICE,
    # Models and experiments
    "project-models": [get({"page": LONG}, expect=(200,)), get({"page": str(BIG_INT)}, expect=(200,)),
                       get({"page": NUL})],
    "project-retrain": [post({"note": NUL}), post({"note": LONG}, expect=(302,))],
    "model-version-detail": [],
    "model-versions-compare": [get({"a": str(BIG_INT), "b": "1"}), get({"a": "-1", "b": "9" * 5000}), get({"a": NUL})],
    "project-dashboard": [],
    "project-dashboard-jobs": [],
    "project-model-status": [],
    "model-version-rollback": [post({"reason": NUL})],
    "model-version-promote": [post({"reason": NUL})],
    "project-model-settings": [
        post({"featurizer": LONG}), post({"featurizer": "text-hashed"}), post({"model_kind": LONG}),
        post({"embedding_field": LONG}), post({"embedding_field": "a b"}), post({"featurizer": "", "model_kind": "x"}),
    ],
    "project-experiments": [],
    "experiment-start": [
        post({"challenger": str(ID_OVER), "mode": "shadow"}), post({"challenger": "9" * 5000, "mode": "shadow"}),
        post({"challenger": "2", "mode": "split", "traffic_share": "1e300"}),
        post({"challenger": "2", "mode": "split", "traffic_share": "nan"}),
        post({"challenger": "2", "mode": "shadow", "min_sample": str(HUGE)}), post({"challenger": "2", "mode": LONG}),
        post({"challenger": "2", "mode": "shadow", "alpha": "-inf"}),
    ],
    "experiment-stop": [post({"reason": NUL})],
    "api-retrain": [post({"note": LONG})],
    "api-runs": [],
    "api-model-versions": [get({"limit": "-1"}), get({"limit": str(BIG_INT)}), get({"before": str(ID_OVER)}),
                           get({"history_before": str(ID_OVER)}), get({"before": NUL}), get({"limit": LONG})],
    "api-model-version-rollback": [post({"reason": LONG})],
    "api-model-version-promote": [post({"reason": LONG})],
    "api-model-settings": [
        patch({"featurizer": LONG}), patch({"featurizer": "text-hashed"}), patch({"featurizer": ["image-hog"]}),
        patch({"model_kind": LONG}), patch({"model_kind": None}), patch({"embedding_field": LONG}),
        patch({"embedding_field": "a b"}), patch({"embedding_field": ""}), patch(["a list"]),
    ],
    "api-predict": [
        post({"values": [BIG_INT, 1]}), post({"item_id": ID_OVER}), post({"items": [{"item_id": 1}] * 1001}),
        post({"text": "x", "caller": LONG}), post({"items": "x"}), post([1, 2]),
    ],
    "api-prediction-feedback": [post({"label_id": ID_OVER}), post({"label_id": BIG_INT}), post({"label": LONG})],
    "api-experiments": [
        post({"challenger": ID_OVER, "mode": "shadow"}), post({"challenger": 2, "mode": "split", "traffic_share": 1e300}),
        post({"challenger": 2, "mode": "shadow", "min_sample": HUGE}), post({"challenger": 2, "mode": LONG}),
    ],
    "api-experiment": [],
    "api-experiment-stop": [post({"reason": LONG})],
}


# API operations that take no body.
IGNORES_BODY = {"api-lease-release", "api-lease-renew", "api-queue-undo", "api-client-token"}


def _int_arguments(name: str) -> list[str]:
    """The names of the URL's integer arguments."""
    route = dict(_patterns(get_resolver().url_patterns))[name]
    return re.findall(r"<int:(\w+)>", route)


def _generic(name: str, method: str, api: bool) -> list[Case]:
    """The cases every route gets: its integer arguments out of range, and bad bodies or queries."""
    # An id that cannot exist: not found (a view that checks its body first may say 400; a page that
    # redirects with a message, 302).
    missing = (400, 404) if api else (302, 400, 404)
    cases = [Case(method, path={arg: value}, expect=missing) for arg in _int_arguments(name) for value in (ID_OVER, HUGE)]
    if name.startswith("api-lease-"):
        cases.append(Case(method, path={"lease_id": "9" * 5000}, expect=(404,)))
    if api and method in ("POST", "PATCH"):
        if name in IGNORES_BODY:
            # The view reads no body: none is parsed, and the request does what it does without one.
            bad, too_large = (200, 204), (200, 204)
        elif name == "api-import-create":
            bad, too_large = (415,), (415,)  # multipart only: a JSON body is not even parsed
        else:
            bad, too_large = (400,), (413,)
        cases += [
            Case(method, raw=DEEP, expect=bad),
            Case(method, raw=BAD_STRINGS, expect=bad),
            Case(method, raw=json.dumps({"note": "x" * (JSON_MAX_BYTES + 1)}).encode(), expect=too_large),
        ]
    elif not api and name not in ("api-schema", "api-docs"):
        cases.append(Case(method, query={"q": NUL}, expect=(400,)))
        if method == "POST":
            cases.append(Case(method, body={"note": NUL, "x\x00": "y"}, expect=(400,)))
    return cases


def _send(client: Client, url: str, case: Case, api: bool):
    if case.query:
        url += "?" + "&".join(f"{k}={_quote(v)}" for k, v in case.query.items())
    if case.raw is not None:
        return client.generic(case.method, url, case.raw, content_type=case.content_type)
    if case.body is None:
        return client.generic(case.method, url)
    if case.content_type == "multipart/form-data" or not api:
        return client.post(url, case.body)  # form-encoded (multipart, Django's test client default)
    return client.generic(case.method, url, json.dumps(case.body), content_type="application/json")


def _quote(value: Any) -> str:
    return quote(str(value), safe="")


def test_every_url_has_its_bad_inputs_and_every_entry_a_url():
    names = {name for name, _ in _patterns(get_resolver().url_patterns)}
    missing = sorted(names - CASES.keys())
    assert not missing, f"Add these URL names and their bad inputs to CASES in tests/test_bad_input_routes.py: {missing}"
    stale = sorted(CASES.keys() - names)
    assert not stale, f"CASES names URLs that no longer exist: {stale}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_input_gets_a_clear_4xx(world: World, settings, name):  # noqa: F811 (the fixture)
    settings.LABELHUB_API_JSON_MAX_BYTES = JSON_MAX_BYTES
    client = Client(raise_request_exception=False)
    client.force_login(world.users["staff"])
    arguments = RULES[name].kwargs(world, "staff")
    api = reverse(name, kwargs=arguments).startswith("/api/") and name not in ("api-schema", "api-docs")
    failures = []
    for method in RULES[name].methods:
        for case in [*_generic(name, method, api), *(c for c in CASES[name] if c.method == method)]:
            if "lease_id" in arguments:  # a fresh lease each time: a skip or a release ends the one before
                arguments = RULES[name].kwargs(world, "staff")
            url = reverse(name, kwargs={**arguments, **case.path})
            response = _send(client, url, case, api)
            if response.status_code not in case.expect:
                shown = response.content[:300].decode("utf-8", "replace")
                failures.append(f"{case.method} {url[:120]} {_describe(case)}: {response.status_code}, "
                                f"expected {case.expect}: {shown}")
    assert not failures, "\n".join(failures)


def _describe(case: Case) -> str:
    if case.raw is not None:
        return f"raw body {case.raw[:40]!r}{'...' if len(case.raw) > 40 else ''}"
    text = json.dumps({"body": case.body, "query": case.query}, default=str)
    return text if len(text) <= 160 else text[:157] + "..."
