"""Dashboard: how many items carry each final label (as the export decides it), and each expert's labels."""
import json
import re
from collections import Counter

import pytest
from django.urls import reverse
from django.utils import timezone

from annotations.exports.rows import ExportOptions
from annotations.exports.selectors import project_export
from annotations.models import Item, Membership
from annotations.selectors import label_distribution
from annotations.selectors.labels import DISTRIBUTION_EXPERTS_MAX
from tests.factories import AnnotationFactory, ItemFactory, LabelFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def voted(text_project, manager, annotator):
    """Five items: two unanimous negatives, a 2–1 positive, a tie (to the earliest label), a resolution, none."""
    negative, positive = text_project.labels.order_by("order")
    LabelFactory(project=text_project, name="neutral", color="#aabbcc", order=2)
    third = UserFactory(username="third")
    items = [ItemFactory(project=text_project, external_id=str(i)) for i in range(6)]
    AnnotationFactory(item=items[0], annotator=annotator, label=negative)
    AnnotationFactory(item=items[1], annotator=manager, label=negative)
    for user, label in ((annotator, positive), (third, positive), (manager, negative)):
        AnnotationFactory(item=items[2], annotator=user, label=label)
    AnnotationFactory(item=items[3], annotator=third, label=negative)  # first: the tie goes to negative
    AnnotationFactory(item=items[3], annotator=annotator, label=positive)
    AnnotationFactory(item=items[4], annotator=annotator, label=negative)
    Item.objects.filter(pk=items[4].pk).update(resolved_label=positive, resolved_at=timezone.now())
    return text_project


def test_the_distribution_counts_final_labels_as_the_export_does(voted):
    result = label_distribution(voted.pk)

    by_name = {label["name"]: label for label in result["labels"]}
    assert [label["name"] for label in result["labels"]] == ["negative", "positive", "neutral"]
    assert {name: label["final"] for name, label in by_name.items()} == {"negative": 3, "positive": 2, "neutral": 0}
    assert result["items"] == 5
    assert result["experts"] == ["annotator", "manager", "third"]  # busiest first, then by name
    assert by_name["negative"]["experts"] == [2, 2, 1] and by_name["positive"]["experts"] == [2, 0, 1]
    assert by_name["neutral"]["color"] == "#aabbcc" and not result["others"]
    exported = "".join(project_export(voted, "jsonl", ExportOptions(mode="final")))
    assert Counter(json.loads(line)["label"] for line in exported.splitlines()) == {"negative": 3, "positive": 2}


def test_experts_beyond_the_busiest_are_counted_together(text_project):
    negative = text_project.labels.order_by("order").first()
    for i in range(DISTRIBUTION_EXPERTS_MAX + 2):
        user = UserFactory(username=f"expert{i}")
        for j in range(DISTRIBUTION_EXPERTS_MAX + 2 - i):
            AnnotationFactory(item=ItemFactory(project=text_project), annotator=user, label=negative)
    result = label_distribution(text_project.pk)

    assert len(result["experts"]) == DISTRIBUTION_EXPERTS_MAX and result["others"]
    assert result["labels"][0]["others"] == 2 + 1


def test_the_dashboard_shows_the_distribution_plot_and_table(client, voted, manager):
    reviewer = UserFactory(username="looks")
    MembershipFactory(project=voted, user=reviewer, role=Membership.Role.REVIEWER)
    client.force_login(reviewer)
    page = client.get(reverse("project-dashboard", args=[voted.pk])).content.decode()

    figure = page[page.index('id="label-distribution"'):page.index("</figure>", page.index('id="label-distribution"'))]
    assert "<svg" in figure and "Items by final label" in figure
    assert "5 items with a final label" in figure
    table = page[page.index('id="label-distribution-table"'):page.index("</table>", page.index('id="label-distribution"'))]
    rows = re.findall(r"<tr><td>.*?</span>(.*?)</td><td class=\"metric\">(\d+)</td>\s*<td>(.*?)</td>", table, re.S)
    assert rows == [("negative", "3", "60%"), ("positive", "2", "40%"), ("neutral", "0", "0%")]
    assert "<th>annotator</th><th>manager</th><th>third</th>" in table


def test_a_label_colour_that_is_no_hex_colour_still_draws(client, voted, manager):
    voted.labels.filter(name="neutral").update(color="red;}")
    client.force_login(manager)
    response = client.get(reverse("project-dashboard", args=[voted.pk]))
    assert response.status_code == 200 and "Items by final label" in response.content.decode()
