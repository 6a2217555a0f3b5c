"""Export page: the same file as the REST export for the same options, a readable message for bad ones, its curl."""
import html
import re

import pytest
from django.urls import reverse

from annotations.models import Membership
from labelhub.throttling import ScopedUserRateThrottle
from tests.annotations.exports.support import body, export_url
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def page_url(project, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("project-export", args=[project.pk]) + (f"?{query}" if query else "")


@pytest.mark.parametrize("options", [
    {"format": "csv", "mode": "final"},
    {"format": "csv", "mode": "all", "include_audit": "true", "include_prediction": "true"},
    {"format": "jsonl", "mode": "all", "since": "2000-01-01T00:00:00"},
    {"format": "jsonl", "mode": "final", "include_audit": "true"},
])
def test_the_page_downloads_the_same_file_as_the_api_for_the_same_options(client, api, labeled, manager, options):
    client.force_login(manager)
    from_page = client.get(page_url(labeled, download="1", **options))
    from_api = api.get(export_url(labeled, **options))

    assert from_page.status_code == 200 == from_api.status_code
    assert from_page["Content-Type"] == from_api["Content-Type"]
    assert from_page["Content-Disposition"] == from_api["Content-Disposition"]
    page_body, api_body = body(from_page), body(from_api)
    assert page_body == api_body
    # Not two empty files: the labeled items are in it (formula-like text neutralised in CSV).
    assert "-minus" in page_body and ("'=HYPERLINK" in page_body if options["format"] == "csv" else True)


def test_the_form_shows_the_options_and_the_curl_command_for_them(client, labeled, manager):
    client.force_login(manager)
    response = client.get(page_url(labeled, format="csv", mode="all", include_audit="true", since=""))

    assert response.status_code == 200
    page = response.content.decode()
    curl = html.unescape(re.search(r'<pre class="command" id="export-curl"><code>(.*?)</code>', page, re.S).group(1))
    assert curl.startswith('curl -fsS -H "Authorization: Token $LABELHUB_TOKEN" -o ')
    assert f"/api/projects/{labeled.pk}/export?format=csv&mode=all&include_audit=true" in curl
    assert "include_prediction" not in curl
    assert reverse("api-token") in page
    assert re.search(r'name="format" value="csv" checked', page) and re.search(r'name="mode" value="all" checked', page)
    assert re.search(r'name="include_audit" value="true" checked', page)
    assert "3 of 3 items labeled, 6 annotations" in page


@pytest.mark.parametrize(("params", "message"), [
    ({"since": "yesterday"}, "Changed since: Datetime has wrong format."),
    ({"format": "xlsx"}, "Format: &quot;xlsx&quot; is not a valid choice."),
    ({"mode": "some"}, "Mode: &quot;some&quot; is not a valid choice."),
    ({"include_audit": "perhaps"}, "Include audit flags: Must be a valid boolean."),
])
def test_bad_options_give_a_message_in_the_page_and_no_file(client, labeled, manager, params, message):
    client.force_login(manager)
    response = client.get(page_url(labeled, download="1", **params))

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert message in response.content.decode()
    assert 'id="export-curl"' not in response.content.decode()


def test_page_downloads_count_against_the_export_rate_shared_with_the_api(client, api, labeled, manager, monkeypatch):
    monkeypatch.setitem(ScopedUserRateThrottle.THROTTLE_RATES, "export", "2/hour")
    client.force_login(manager)
    assert client.get(page_url(labeled, download="1")).status_code == 200
    assert api.get(export_url(labeled)).status_code == 200
    refused = client.get(page_url(labeled, download="1"))

    assert refused.status_code == 429
    assert "try again in" in refused.content.decode() and "2/hour" in refused.content.decode()


def test_reviewers_and_annotators_get_no_export_page_nor_link(client, labeled, annotator):
    reviewer = UserFactory(username="reviewer")
    MembershipFactory(project=labeled, user=reviewer, role=Membership.Role.REVIEWER)
    for user in (annotator, reviewer):
        client.force_login(user)
        assert client.get(page_url(labeled, download="1")).status_code == 404
        project_page = client.get(reverse("project-detail", args=[labeled.pk])).content.decode()
        assert reverse("project-export", args=[labeled.pk]) not in project_page
