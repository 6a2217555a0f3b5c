"""The items browser, the item page's correction and an expert's own labels: filters, sorts, hostile input, roles."""
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotations import selectors, services
from annotations.models import Annotation, AnnotationCorrection, Item, ItemScore, Membership, Project, QueueScoring
from annotations.selectors import ItemFilters, item_browse
from labelhub.api import DomainError
from tests.factories import AnnotationFactory, ItemFactory, LabelFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    """Six text items: two unlabeled and scored, a disagreement, an agreed audit item, a gold item, a resolved item."""
    project = ProjectFactory(kind=Project.Kind.TEXT, overlap=2)
    cat = LabelFactory(project=project, name="cat", order=0)
    dog = LabelFactory(project=project, name="dog", order=1)
    ada, ben = UserFactory(username="ada"), UserFactory(username="ben")
    reviewer = UserFactory(username="rita")
    for user, role in ((ada, "annotator"), (ben, "annotator"), (reviewer, "reviewer")):
        MembershipFactory(project=project, user=user, role=role)
    items = {name: ItemFactory(project=project, external_id=name, text=f"the {name} text", metadata=meta)
             for name, meta in [
                 ("fresh-1", {"source": "web", "batch": 3}), ("fresh-2", {"source": "mail"}),
                 ("split", {"source": "web"}), ("agreed", {}), ("golden", {}), ("settled", {}),
             ]}
    AnnotationFactory(item=items["split"], annotator=ada, label=cat)
    AnnotationFactory(item=items["split"], annotator=ben, label=dog)
    AnnotationFactory(item=items["agreed"], annotator=ada, label=dog, is_audit=True)
    AnnotationFactory(item=items["agreed"], annotator=ben, label=dog)
    AnnotationFactory(item=items["golden"], annotator=ben, label=cat)
    AnnotationFactory(item=items["settled"], annotator=ada, label=cat)
    AnnotationFactory(item=items["settled"], annotator=ben, label=dog)
    twice = [items[n].pk for n in ("split", "agreed", "settled")]
    Item.objects.filter(pk__in=twice).update(label_count=2, queue_done=True)
    Item.objects.filter(pk=items["golden"].pk).update(label_count=1, gold_label=cat)
    Item.objects.filter(pk=items["settled"].pk).update(resolved_label=dog, resolved_by=reviewer,
                                                       resolved_at=timezone.now())
    scoring = QueueScoring.objects.create(
        project=project, model_version=4, strategy=project.query_strategy, status=QueueScoring.Status.COMPLETE,
        finished_at=timezone.now(), items_total=3, items_scored=3,
    )
    ItemScore.objects.bulk_create([
        ItemScore(scoring=scoring, item=items["fresh-1"], priority=0.9, predicted_label=cat, confidence=0.55),
        ItemScore(scoring=scoring, item=items["fresh-2"], priority=0.2, predicted_label=dog, confidence=0.95),
        ItemScore(scoring=scoring, item=items["golden"], priority=0.5, predicted_label=cat, confidence=0.75),
    ])
    return {"project": project, "cat": cat, "dog": dog, "ada": ada, "ben": ben, "reviewer": reviewer, **items}


def names(pool, **filters) -> list[str]:
    return [item.external_id for item in item_browse(pool["project"], ItemFilters(**filters)).items]


def test_status_filters(pool):
    assert names(pool) == ["settled", "golden", "agreed", "split", "fresh-2", "fresh-1"]
    assert names(pool, status="unlabeled") == ["fresh-2", "fresh-1"]
    assert names(pool, status="labeled") == ["settled", "golden", "agreed", "split"]
    assert names(pool, status="done") == ["settled", "agreed", "split"]
    assert names(pool, status="audit") == ["agreed"]
    assert names(pool, status="gold") == ["golden"]
    assert names(pool, status="disagreement") == ["split"]  # settled disagrees too, but is resolved
    assert names(pool, status="review") == ["split"]
    assert names(pool, status="resolved") == ["settled"]


def test_needs_review_takes_a_confident_model_the_expert_overruled_as_the_review_page_does(pool):
    project, cat, dog = pool["project"], pool["cat"], pool["dog"]
    Project.objects.filter(pk=project.pk).update(review_confidence=0.8)
    project.refresh_from_db()
    Annotation.objects.filter(item=pool["agreed"]).update(predicted_label=cat, predicted_confidence=0.9)
    Annotation.objects.filter(item=pool["golden"]).update(predicted_label=dog, predicted_confidence=0.7)
    Annotation.objects.filter(item=pool["settled"]).update(predicted_label=cat, predicted_confidence=0.99)

    assert names(pool, status="review") == ["agreed", "split"]  # golden's model was not sure; settled is resolved
    assert names(pool, status="disagreement") == ["split"]
    review_page = selectors.review_items(project, kind="queue")
    assert sorted(i.external_id for i in review_page) == ["agreed", "split"]


def test_live_prediction_and_confidence_range_hold_together(pool):
    assert names(pool, prediction_id=pool["cat"].pk, confidence_min=0.5, confidence_max=0.8) == ["golden", "fresh-1"]
    assert names(pool, prediction_id=pool["cat"].pk, confidence_min=0.6) == ["golden"]
    assert names(pool, prediction_id=pool["dog"].pk, confidence_max=0.9) == []


def test_final_label_annotator_and_live_prediction_filters(pool):
    # Final label: the reviewer's resolution, else the majority (a tie goes to the earliest label).
    assert names(pool, label_id=pool["dog"].pk) == ["settled", "agreed"]
    assert names(pool, label_id=pool["cat"].pk) == ["golden", "split"]
    assert names(pool, annotator_id=pool["ada"].pk) == ["settled", "agreed", "split"]
    assert names(pool, prediction_id=pool["cat"].pk) == ["golden", "fresh-1"]
    assert names(pool, confidence_min=0.7, confidence_max=0.8) == ["golden"]


def test_sorts_by_uncertainty_and_confidence_keep_to_scored_items(pool):
    assert names(pool, sort="oldest")[0] == "fresh-1"
    assert names(pool, sort="uncertainty") == ["fresh-1", "golden", "fresh-2"]
    assert names(pool, sort="confidence") == ["fresh-1", "golden", "fresh-2"]
    assert names(pool, sort="-confidence") == ["fresh-2", "golden", "fresh-1"]
    page = item_browse(pool["project"], ItemFilters(sort="uncertainty"))
    assert [(i.live_label_id, i.live_confidence) for i in page.items][0] == (pool["cat"].pk, 0.55)


def test_search_and_metadata(pool):
    assert names(pool, search="fresh-2") == ["fresh-2"]
    assert names(pool, search="GOLDEN TEXT") == ["golden"]
    assert names(pool, search="zz") == []  # short strings match an external id exactly
    assert names(pool, metadata=(("source", "web"),)) == ["split", "fresh-1"]
    assert names(pool, metadata=(("source", "web"), ("batch", "3"))) == ["fresh-1"]
    assert names(pool, metadata=(("batch", "3.5"),)) == []
    assert names(pool, metadata=(("source", "web"), ("source", "mail"))) == []  # a name given twice holds both
    assert names(pool, metadata=(("batch", "3"), ("source", "web"), ("batch", "3"))) == ["fresh-1"]


@pytest.mark.parametrize("search", ["' OR 1=1 --", "%", "_", "\\", "fresh%'; DROP TABLE annotations_item; --"])
def test_sql_like_search_strings_match_nothing_and_break_nothing(pool, search):
    assert names(pool, search=search) == []
    assert Item.objects.filter(project=pool["project"]).count() == 6


def test_unknown_or_foreign_ids_are_named_in_the_message(pool):
    other = ProjectFactory()
    stranger = UserFactory(username="stranger")
    MembershipFactory(project=other, user=stranger, role="annotator")
    foreign_label = LabelFactory(project=other, name="fox")
    for filters, text in [
        (ItemFilters(label_id=999_999), "label 999999"),
        (ItemFilters(prediction_id=foreign_label.pk), f"label {foreign_label.pk}"),
        (ItemFilters(annotator_id=stranger.pk), f"user {stranger.pk}"),
        (ItemFilters(status="everything"), "Unknown status"),
        (ItemFilters(sort="random()"), "Unknown sort"),
    ]:
        with pytest.raises(DomainError, match=text):
            item_browse(pool["project"], filters)


def test_pages_are_bounded_and_counted(pool, monkeypatch):
    monkeypatch.setattr("annotations.selectors.browse.PAGE_SIZE", 2)
    monkeypatch.setattr("annotations.selectors.browse.DEPTH_MAX", 4)
    monkeypatch.setattr("annotations.selectors.browse.COUNT_MAX", 4)
    first = item_browse(pool["project"], ItemFilters(), page=1)
    assert (len(first.items), first.more, first.total, first.total_capped) == (2, True, 4, True)
    last = item_browse(pool["project"], ItemFilters(), page=99)  # clamped to the deepest page
    assert last.number == 2 and not last.more


def client_for(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("query, message", [
    ("conf_min=-0.5", "greater than or equal to 0"),
    ("conf_min=0.9&conf_max=0.1", "confidence range is empty"),
    ("conf_max=nan", "Enter a number"),
    ("label=abc", "Enter a whole number"),
    ("label=999999", "not a label of this project"),
    ("status=nope", "Select a valid choice"),
    ("meta=noequals", "field=value"),
    ("meta=a%3D%00", "NUL character"),
    ("q=" + "x" * 300, "at most 200 characters"),
])
def test_items_page_says_what_is_wrong_with_a_filter(client, pool, query, message):
    client_for(client, pool["reviewer"])
    response = client.get(reverse("project-items", args=[pool["project"].pk]) + "?" + query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_items_page_lists_filtered_items_for_reviewers_not_annotators(client, pool):
    url = reverse("project-items", args=[pool["project"].pk]) + "?status=disagreement"
    assert client_for(client, pool["ada"]).get(url).status_code == 404
    response = client_for(client, pool["reviewer"]).get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "split" in body and "fresh-1" not in body
    assert "1 item matches" in body


def test_item_page_shows_labels_and_live_prediction(client, pool):
    client_for(client, pool["reviewer"])
    body = client.get(reverse("project-item", args=[pool["project"].pk, pool["golden"].pk])).content.decode()
    assert "the golden text" in body and "75% confident" in body and "model version 4" in body
    other = ItemFactory(project=ProjectFactory())
    assert client.get(reverse("project-item", args=[pool["project"].pk, other.pk])).status_code == 404


def test_a_correction_from_the_item_page_is_stored_once_and_shown(client, pool):
    client_for(client, pool["reviewer"])
    split = pool["split"]
    annotation = Annotation.objects.get(item=split, annotator=pool["ben"])
    url = reverse("project-item-correct", args=[pool["project"].pk, split.pk])
    data = {"annotation_id": annotation.pk, "label_id": pool["cat"].pk, "note": "a cat, clearly"}
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    assert "was dog → cat by rita" in body and "a cat, clearly" in body
    again = client.post(url, data)  # a second click changes nothing
    assert again.status_code == 400 and "already" in again.content.decode()
    assert AnnotationCorrection.objects.filter(annotation=annotation).count() == 1
    annotation.refresh_from_db()
    assert annotation.label == pool["cat"]
    # Another item's label through this item's address is refused.
    foreign = Annotation.objects.get(item=pool["agreed"], annotator=pool["ben"])
    refused = client.post(url, {"annotation_id": foreign.pk, "label_id": pool["cat"].pk})
    assert refused.status_code == 404
    assert Annotation.objects.get(pk=foreign.pk).label == pool["dog"]


def test_an_expert_changes_an_older_label_of_their_own_and_not_someone_elses(client, pool):
    client_for(client, pool["ada"])
    project = pool["project"]
    older = Annotation.objects.get(item=pool["split"], annotator=pool["ada"])
    newer = Annotation.objects.get(item=pool["agreed"], annotator=pool["ada"])
    Annotation.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=2))
    listing = client.get(reverse("my-labels", args=[project.pk])).content.decode()
    assert listing.index(f"my-label-{newer.pk}") < listing.index(f"my-label-{older.pk}")
    response = client.post(reverse("my-label-change", args=[project.pk, older.pk]), {"label_id": pool["dog"].pk})
    assert response.status_code == 302
    older.refresh_from_db()
    assert older.label == pool["dog"]
    correction = AnnotationCorrection.objects.get(annotation=older)
    assert (correction.corrected_by, correction.previous_label) == (pool["ada"], pool["cat"])
    assert Item.objects.get(pk=pool["split"].pk).label_count == 2  # counts and the queue stay as they were
    bens = Annotation.objects.get(item=pool["split"], annotator=pool["ben"])
    refused = client.post(reverse("my-label-change", args=[project.pk, bens.pk]), {"label_id": pool["cat"].pk})
    assert refused.status_code == 404
    assert Annotation.objects.get(pk=bens.pk).label == pool["dog"]


def test_an_expert_may_not_change_a_resolved_item_or_a_reviewers_correction(pool):
    settled = Annotation.objects.get(item=pool["settled"], annotator=pool["ada"])
    with pytest.raises(DomainError, match="final label"):
        services.annotation_change_own(annotation=settled, label=pool["dog"], user=pool["ada"])
    corrected = Annotation.objects.get(item=pool["agreed"], annotator=pool["ada"])
    services.annotation_correct(annotation=corrected, label=pool["cat"], user=pool["reviewer"])
    with pytest.raises(DomainError, match="reviewer corrected"):
        services.annotation_change_own(annotation=corrected, label=pool["dog"], user=pool["ada"])
    with pytest.raises(DomainError, match="Only the expert"):
        services.annotation_change_own(
            annotation=Annotation.objects.get(item=pool["split"], annotator=pool["ben"]), label=pool["cat"],
            user=pool["ada"],
        )
    assert AnnotationCorrection.objects.filter(corrected_by=pool["ada"]).count() == 0


def test_the_annotator_choices_are_the_projects_people(pool):
    assert [u.username for u in selectors.project_annotators(pool["project"])] == ["ada", "ben", "rita"]
    assert Membership.objects.count() == 3
