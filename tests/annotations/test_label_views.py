"""The labeling page and its fragments: who sees them, what they show, what submit, skip, undo, renew, release do."""
import random
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotations import services
from annotations.models import Annotation, Lease, Project, QueueScoring
from tests.factories import ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(text_project):
    return [ItemFactory(project=text_project, text=f"review {i}") for i in range(3)]


@pytest.fixture
def expert_client(client, annotator):
    client.force_login(annotator)
    return client


def _lease(project, user, exclude=()) -> Lease:
    lease = services.queue_next(project=project, user=user, exclude=exclude)
    assert lease is not None
    return lease


def _served_scoring(project, items) -> QueueScoring:
    """A complete scoring by v4 putting the items first in order, each suggested "negative" at 61%; no audit
    draws (so no suggestion withheld either), so the queue serves them in that order."""
    scoring = QueueScoring.objects.create(
        project=project, model_version=4, strategy=Project.Strategy.MARGIN,
        status=QueueScoring.Status.COMPLETE, finished_at=timezone.now() - timedelta(minutes=5),
    )
    negative = project.labels.get(name="negative")
    for rank, item in enumerate(items):
        scoring.scores.create(item=item, priority=10 - rank, predicted_label=negative, confidence=0.61)
    project.audit_share = 0.0
    project.save()
    return scoring


def _url(name, project, lease=None):
    return reverse(name, args=[project.pk] if lease is None else [project.pk, lease.pk])


def _error_text(response) -> str:
    match = re.search(r'<p class="label-error"[^>]*>(.*?)</p>', response.content.decode(), re.S)
    assert match, response.content.decode()
    return match.group(1).strip()


def _suggest(lease, label, confidence=0.87, version=3) -> None:
    """Give the lease a suggestion that it shows (not withheld)."""
    Lease.objects.filter(pk=lease.pk).update(
        predicted_label=label, predicted_confidence=confidence, model_version=version, suggestion_withheld=False
    )


# --- the page ---------------------------------------------------------------------------------


def test_the_page_shows_a_member_their_current_item_labels_keys_and_instructions(expert_client, text_project, items):
    text_project.instructions = "Positive means the reviewer would buy again."
    text_project.save()

    response = expert_client.get(_url("label", text_project))

    assert response.status_code == 200
    body = response.content.decode()
    lease = Lease.objects.get(user__username="annotator", status=Lease.Status.ACTIVE)
    assert f'data-lease="{lease.pk}"' in body
    assert lease.item.text in body
    for label in text_project.labels.all():
        assert f'data-label-id="{label.pk}" data-key="{label.shortcut}"' in body
        assert f"<kbd>{label.shortcut}</kbd>" in body
    # s and Space skip, z and Backspace undo: no label of this project claims them.
    assert "Skip <kbd>S</kbd> <kbd>Space</kbd>" in body
    assert "<kbd>Z</kbd> <kbd>⌫</kbd> <kbd>Ctrl+Z</kbd>" in body
    assert "Positive means the reviewer would buy again." in body
    assert 'data-labeled="0" data-pool="3"' in body
    assert "js/label.js" in body
    # The heartbeat renews leases three times per TTL.
    assert f'data-heartbeat-ms="{text_project.lease_ttl_seconds * 1000 // 3}"' in body


def test_the_page_is_not_found_for_a_non_member_and_asks_strangers_to_log_in(client, text_project, items):
    outsider = UserFactory(username="outsider")
    assert client.get(_url("label", text_project)).status_code == 302
    client.force_login(outsider)
    assert client.get(_url("label", text_project)).status_code == 404
    for name in ("label-next", "label-undo"):
        response = client.post(_url(name, text_project))
        assert response.status_code == 404
        assert _error_text(response) == "Project not found."
    assert not Lease.objects.exists()


def test_the_project_page_links_to_labeling(expert_client, text_project):
    body = expert_client.get(reverse("project-detail", args=[text_project.pk])).content.decode()
    assert f'href="{_url("label", text_project)}"' in body
    assert "Start labeling" in body


def test_a_key_a_label_claims_is_not_offered_for_skip_or_undo(expert_client, text_project, items):
    LabelFactory(project=text_project, name="spam", shortcut="s")
    LabelFactory(project=text_project, name="zero", shortcut="z")
    body = expert_client.get(_url("label", text_project)).content.decode()
    assert 'data-action="skip" data-keys="|"' not in body
    assert 'data-action="skip" data-keys=" "' in body
    assert 'data-action="undo" data-keys="Backspace"' in body


def test_item_text_is_escaped(expert_client, text_project):
    ItemFactory(project=text_project, text='<script>alert("x")</script> & <b>bold</b>')
    body = expert_client.get(_url("label", text_project)).content.decode()
    assert "<script>alert" not in body
    assert "<b>bold</b>" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in body


def test_an_image_item_is_served_by_the_media_view(client, image_project, manager):
    item = ItemFactory(project=image_project, text="", image="items/1/abc.png", thumbnail="items/1/abc-thumb.png")
    client.force_login(manager)
    body = client.get(_url("label", image_project)).content.decode()
    assert f'<img class="label-image" src="{reverse("item-media", args=[item.pk, "image"])}"' in body


def test_a_tabular_row_is_a_table_of_feature_names_and_values(client, tabular_project, manager):
    tabular_project.feature_names = ["alcohol", "malic_acid", "magnesium"]
    tabular_project.save()
    ItemFactory(project=tabular_project, text="", values=[13.2, 1.78, 101.0])
    client.force_login(manager)
    body = client.get(_url("label", tabular_project)).content.decode()
    cells = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="num">([^<]+)</td></tr>', body)
    assert cells == [("alcohol", "13.2"), ("malic_acid", "1.78"), ("magnesium", "101")]


def test_a_long_tabular_row_is_split_into_side_by_side_tables(client, tabular_project, manager):
    tabular_project.feature_names = [f"f{i}" for i in range(30)]
    tabular_project.save()
    ItemFactory(project=tabular_project, text="", values=[float(i) for i in range(30)])
    client.force_login(manager)
    body = client.get(_url("label", tabular_project)).content.decode()
    assert body.count('<table class="label-table">') == 3
    assert len(re.findall(r'<th scope="row">f\d+</th>', body)) == 30


def test_an_empty_queue_shows_all_done(expert_client, text_project):
    body = expert_client.get(_url("label", text_project)).content.decode()
    assert "All done" in body
    assert 'data-kind="item"' not in body


# --- suggestions and audit ----------------------------------------------------------------------


def test_the_suggestion_and_its_confidence_are_shown(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    positive = text_project.labels.get(name="positive")
    _suggest(lease, positive)

    # Without exclude, the next fragment is the expert's oldest lease: this one.
    response = expert_client.post(_url("label-next", text_project))

    body = response.content.decode()
    assert response.status_code == 200
    assert f'data-lease="{lease.pk}"' in body
    assert f'data-suggested="{positive.pk}"' in body
    assert "Model suggests" in body
    assert re.search(r"</span>\s*positive\s*</span>", body)
    assert "87% confident" in body
    assert "model v3" in body


def test_the_suggestion_is_left_out_when_the_project_hides_it(expert_client, text_project, items, annotator):
    text_project.show_suggestions = False
    text_project.save()
    lease = _lease(text_project, annotator)
    _suggest(lease, text_project.labels.get(name="positive"))

    for body in (
        expert_client.post(_url("label-next", text_project)).content.decode(),
        expert_client.get(_url("label", text_project)).content.decode(),
    ):
        assert f'data-lease="{lease.pk}"' in body
        assert "Model suggests" not in body
        assert "data-suggested" not in body
        assert "87%" not in body


def test_a_suggestion_comes_from_the_scoring_the_queue_serves_and_one_model_ranks_and_suggests(
    expert_client, text_project, items
):
    _served_scoring(text_project, items)

    body = expert_client.get(_url("label", text_project)).content.decode()

    assert items[0].text in body
    assert "61% confident" in body and "model v4" in body
    assert "Queue ranked by model <strong>v4</strong> (margin) · scored" in body
    assert "suggestions by" not in body
    assert "5\xa0minutes ago" in body


def test_audit_items_look_like_any_other(expert_client, text_project, items, annotator):
    text_project.audit_share = 1.0
    text_project.save()
    lease = _lease(text_project, annotator)
    assert lease.is_audit
    page = expert_client.get(_url("label", text_project)).content.decode()
    fragment = expert_client.post(_url("label-next", text_project), {"exclude": [lease.pk]}).content.decode()
    assert f'data-lease="{lease.pk}"' in page
    assert 'data-kind="item"' in fragment
    for body in (page, fragment):
        assert "audit" not in body.lower()


def test_an_audit_item_shows_no_suggestion_on_the_page_or_in_the_next_fragment(expert_client, text_project, items):
    _served_scoring(text_project, items)
    text_project.audit_share = 1.0
    text_project.save()

    page = expert_client.get(_url("label", text_project)).content.decode()
    lease = Lease.objects.get(status=Lease.Status.ACTIVE)
    fragment = expert_client.post(_url("label-next", text_project), {"exclude": [lease.pk]}).content.decode()

    assert lease.is_audit and lease.predicted_label.name == "negative"  # stored, not shown
    assert f'data-lease="{lease.pk}"' in page and 'data-kind="item"' in fragment
    for body in (page, fragment):
        assert "Model suggests" not in body and "data-suggested" not in body and "61%" not in body


def _markup(fragment: str, lease: Lease) -> str:
    """An item fragment with its lease id, item id and text left out."""
    fragment = fragment.replace(str(lease.pk), "LEASE").replace(lease.item.text, "TEXT")
    return re.sub(r'data-item-id="\d+"|Item (<strong>)?\d+', "ITEM", fragment)


def test_an_audit_item_and_an_ordinary_item_with_its_suggestion_withheld_look_the_same(
    expert_client, text_project, annotator
):
    items = [ItemFactory(project=text_project, text=f"review {i}") for i in range(40)]
    _served_scoring(text_project, items)
    text_project.audit_share = 0.3  # w = 0.43
    text_project.save()
    random.seed(8)

    shown = {}  # (is_audit, suggestion withheld): the item fragment
    for _ in range(40):
        fragment = expert_client.post(_url("label-next", text_project)).content.decode()
        lease = Lease.objects.select_related("item").get(user=annotator, status=Lease.Status.ACTIVE)
        shown.setdefault((lease.is_audit, lease.suggestion_withheld), _markup(fragment, lease))
        services.annotation_submit(lease_id=lease.pk, user=annotator, label_name="positive")
    assert set(shown) == {(True, True), (False, True), (False, False)}

    assert shown[True, True] == shown[False, True]
    assert "Model suggests" in shown[False, False] and shown[False, False] != shown[False, True]


# --- next ---------------------------------------------------------------------------------------


def test_next_leases_another_item_than_the_ones_excluded(expert_client, text_project, items, annotator):
    first = _lease(text_project, annotator)
    response = expert_client.post(_url("label-next", text_project), {"exclude": [first.pk]})
    second = Lease.objects.exclude(pk=first.pk).get(user=annotator)
    assert response.status_code == 200
    assert f'data-lease="{second.pk}"' in response.content.decode()
    assert second.item_id != first.item_id


def test_next_says_all_done_when_nothing_else_is_left(expert_client, text_project, annotator):
    ItemFactory(project=text_project)
    only = _lease(text_project, annotator)
    response = expert_client.post(_url("label-next", text_project), {"exclude": [only.pk]})
    assert response.status_code == 200
    assert 'data-kind="done"' in response.content.decode()
    assert "All done" in response.content.decode()


def test_next_refuses_an_exclude_that_is_not_a_lease_id(expert_client, text_project, items):
    response = expert_client.post(_url("label-next", text_project), {"exclude": ["nope"]})
    assert response.status_code == 400
    assert _error_text(response) == "exclude must list lease ids."


def test_the_fragments_refuse_get(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    assert expert_client.get(_url("label-next", text_project)).status_code == 405
    assert expert_client.get(_url("label-submit", text_project, lease)).status_code == 405
    assert expert_client.get(_url("label-undo", text_project)).status_code == 405


# --- submit, skip -------------------------------------------------------------------------------


def test_submit_stores_the_label_with_the_time_spent_and_returns_progress(
    expert_client, text_project, items, annotator
):
    lease = _lease(text_project, annotator)
    positive = text_project.labels.get(name="positive")
    _suggest(lease, text_project.labels.get(name="negative"), confidence=0.7, version=2)

    response = expert_client.post(
        _url("label-submit", text_project, lease), {"label_id": positive.pk, "time_spent_ms": 2345}
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="label-progress"' in body and "hx-swap-oob" not in body
    assert 'data-labeled="1" data-pool="3" data-mine-today="1"' in body
    assert "<strong>1</strong> of 3 items labeled" in body
    annotation = Annotation.objects.get()
    assert (annotation.item_id, annotation.annotator, annotation.label, annotation.time_spent_ms) == (
        lease.item_id, annotator, positive, 2345,
    )
    assert annotation.predicted_label.name == "negative" and annotation.model_version == 2
    # A retried submit (the page's request sent again) stores nothing new.
    again = expert_client.post(_url("label-submit", text_project, lease), {"label_id": positive.pk})
    assert again.status_code == 200
    assert Annotation.objects.count() == 1


def test_submit_explains_what_is_wrong(expert_client, text_project, items, annotator, tabular_project):
    lease = _lease(text_project, annotator)
    foreign_label = tabular_project.labels.first()

    missing = expert_client.post(_url("label-submit", text_project, lease), {})
    assert missing.status_code == 400 and _error_text(missing) == "Choose a label."
    negative_time = expert_client.post(
        _url("label-submit", text_project, lease), {"label_id": 1, "time_spent_ms": -5}
    )
    assert negative_time.status_code == 400 and "greater than or equal to 0" in _error_text(negative_time)
    foreign = expert_client.post(_url("label-submit", text_project, lease), {"label_id": foreign_label.pk})
    assert foreign.status_code == 400
    assert _error_text(foreign) == f"{foreign_label.pk!r} is not a label of this project."
    beyond = expert_client.post(_url("label-submit", text_project, lease), {"label_id": str(2**63)})
    assert beyond.status_code == 400 and "less than or equal to 9223372036854775807" in _error_text(beyond)
    assert not Annotation.objects.exists()


def test_submit_on_a_lease_given_back_is_a_conflict_with_a_readable_message(
    expert_client, text_project, items, annotator
):
    lease = _lease(text_project, annotator)
    services.lease_release(lease_id=lease.pk, user=annotator)
    response = expert_client.post(
        _url("label-submit", text_project, lease), {"label_id": text_project.labels.first().pk}
    )
    assert response.status_code == 409
    assert _error_text(response) == "This item was given back; ask for the next one."
    assert not Annotation.objects.exists()


def test_someone_elses_lease_is_not_found(client, text_project, items, annotator, manager):
    lease = _lease(text_project, annotator)
    client.force_login(manager)
    for name in ("label-submit", "label-skip", "label-renew", "label-release"):
        response = client.post(_url(name, text_project, lease), {"label_id": text_project.labels.first().pk})
        assert response.status_code == 404
        assert _error_text(response) == "This item is not reserved for you in this project."
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE


def test_a_lease_is_only_answered_through_its_own_project(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    other = ProjectFactory()
    MembershipFactory(project=other, user=annotator)
    response = expert_client.post(
        reverse("label-submit", args=[other.pk, lease.pk]), {"label_id": text_project.labels.first().pk}
    )
    assert response.status_code == 404
    assert not Annotation.objects.exists()


def test_skip_gives_the_item_up_for_this_expert(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    response = expert_client.post(_url("label-skip", text_project, lease))
    assert response.status_code == 200
    assert 'id="label-progress"' in response.content.decode()
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.SKIPPED
    served = {services.queue_next(project=text_project, user=annotator, exclude=()).item_id}
    assert lease.item_id not in served


# --- undo -----------------------------------------------------------------------------------------


def test_undo_takes_back_the_last_label_and_returns_that_item_with_progress(
    expert_client, text_project, items, annotator
):
    positive = text_project.labels.get(name="positive")
    first = _lease(text_project, annotator)
    expert_client.post(_url("label-submit", text_project, first), {"label_id": positive.pk})
    second = _lease(text_project, annotator)
    expert_client.post(_url("label-submit", text_project, second), {"label_id": positive.pk})

    response = expert_client.post(_url("label-undo", text_project))

    assert response.status_code == 200
    body = response.content.decode()
    again = Lease.objects.get(user=annotator, item=second.item, status=Lease.Status.ACTIVE)
    assert f'data-lease="{again.pk}"' in body and f'data-item-id="{second.item_id}"' in body
    assert 'id="label-progress" hx-swap-oob="true"' in body
    assert 'data-labeled="1"' in body
    assert list(Annotation.objects.values_list("item_id", flat=True)) == [first.item_id]


def test_undo_with_nothing_to_undo_says_so(expert_client, text_project, items):
    response = expert_client.post(_url("label-undo", text_project))
    assert response.status_code == 409
    assert _error_text(response) == "There is no label of yours to undo in this project."


# --- renew, release -------------------------------------------------------------------------------


def test_renew_extends_the_lease(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    soon = timezone.now() + timedelta(seconds=30)
    Lease.objects.filter(pk=lease.pk).update(expires_at=soon)
    response = expert_client.post(_url("label-renew", text_project, lease))
    assert response.status_code == 204
    assert Lease.objects.get(pk=lease.pk).expires_at > soon + timedelta(seconds=text_project.lease_ttl_seconds - 60)


def test_renew_of_an_answered_lease_is_a_conflict(expert_client, text_project, items, annotator):
    lease = _lease(text_project, annotator)
    expert_client.post(_url("label-submit", text_project, lease), {"label_id": text_project.labels.first().pk})
    response = expert_client.post(_url("label-renew", text_project, lease))
    assert response.status_code == 409
    assert _error_text(response) == "This item was already labeled."


def test_release_by_beacon_needs_the_csrf_form_field(text_project, items, annotator):
    """The page's beacon sends the token as csrfmiddlewaretoken; without it nothing is released."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    page = client.get(_url("label", text_project))
    token = page.cookies["csrftoken"].value
    lease = Lease.objects.get(user=annotator, status=Lease.Status.ACTIVE)

    assert client.post(_url("label-release", text_project, lease)).status_code == 403
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE
    response = client.post(_url("label-release", text_project, lease), {"csrfmiddlewaretoken": token})
    assert response.status_code == 204
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.RELEASED


def test_the_fragments_take_the_csrf_header_the_script_sends(text_project, items, annotator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    page = client.get(_url("label", text_project)).content.decode()
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    lease = Lease.objects.get(user=annotator, status=Lease.Status.ACTIVE)
    response = client.post(
        _url("label-submit", text_project, lease),
        {"label_id": text_project.labels.first().pk},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert Annotation.objects.filter(item=lease.item, annotator=annotator).exists()



def test_the_all_done_fragment_brings_the_sidebar_counted_by_the_same_render(expert_client, text_project, annotator):
    item = ItemFactory(project=text_project)
    lease = _lease(text_project, annotator)
    expert_client.post(_url("label-submit", text_project, lease), {"label_id": text_project.labels.first().pk})

    body = expert_client.post(_url("label-next", text_project)).content.decode()

    assert 'data-kind="done"' in body and item.text not in body
    today = re.search(r'<span class="label-done-count">(\d+)</span>', body).group(1)
    sidebar = re.search(r'id="label-progress" hx-swap-oob="true"[^>]* data-mine-today="(\d+)"', body).group(1)
    assert today == sidebar == "1"
