"""The review workflow: the review queue, resolutions in training snapshots, corrections, agreement and gold accuracy."""
import io
import json

import pytest
from django.urls import reverse

from annotations import selectors, services
from annotations.imports import services as import_services
from annotations.models import Annotation, AnnotationCorrection, Item, Membership, Project
from annotations.selectors.labels import item_final_labels, label_snapshot
from labelhub.api import DomainError
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(text_project):
    user = UserFactory(username="reviewer")
    MembershipFactory(project=text_project, user=user, role=Membership.Role.REVIEWER)
    return user


@pytest.fixture
def experts(text_project):
    users = [UserFactory(username=name) for name in ("ada", "ben", "cy")]
    for user in users:
        MembershipFactory(project=text_project, user=user, role=Membership.Role.ANNOTATOR)
    return users


@pytest.fixture
def labels(text_project):
    return {label.name: label for label in text_project.labels.all()}


@pytest.fixture
def reviewed(text_project, experts, labels):
    """Four items labeled by two experts: one disagreement, one against a confident model, two plain."""
    project: Project = text_project
    project.overlap, project.review_confidence = 2, 0.9
    project.save()
    neg, pos = labels["negative"], labels["positive"]
    ada, ben, _ = experts
    items = {name: ItemFactory(project=project, external_id=name) for name in ("split", "confident", "plain", "unsure")}
    AnnotationFactory(item=items["split"], annotator=ada, label=neg)
    AnnotationFactory(item=items["split"], annotator=ben, label=pos)
    for name in ("confident", "plain", "unsure"):
        for user in (ada, ben):
            AnnotationFactory(item=items[name], annotator=user, label=neg)
    # The model was 95 % sure of "positive" when ada labeled "confident", and only 60 % sure on "unsure".
    Annotation.objects.filter(item=items["confident"], annotator=ada).update(
        predicted_label=pos, predicted_confidence=0.95, model_version=3
    )
    Annotation.objects.filter(item=items["unsure"], annotator=ada).update(
        predicted_label=pos, predicted_confidence=0.6, model_version=3
    )
    return project, items


def _ids(queryset):
    return [item.external_id for item in queryset]


def test_review_queue_lists_disagreements_and_confident_model_disagreements(reviewed):
    project, _items = reviewed
    assert _ids(selectors.review_items(project)) == ["split", "confident"]
    assert _ids(selectors.review_items(project, kind="disagreement")) == ["split"]
    assert _ids(selectors.review_items(project, kind="model")) == ["confident"]
    assert _ids(selectors.review_items(project, kind="resolved")) == []
    # Lowering the project's threshold brings the 60 % disagreement in too.
    project.review_confidence = 0.5
    assert _ids(selectors.review_items(project, kind="model")) == ["confident", "unsure"]
    with pytest.raises(DomainError):
        selectors.review_items(project, kind="everything")


def test_review_queue_reads_labels_in_a_fixed_number_of_queries(reviewed, django_assert_num_queries):
    project, _ = reviewed
    with django_assert_num_queries(3):  # the items, all their labels with experts and labels, all their skips
        items = list(selectors.review_items(project))
        [(a.annotator.username, a.label.name) for item in items for a in item.annotations.all()]
        [(s.user.username, s.skip_reason) for item in items for s in item.skips]


def test_resolving_moves_the_item_out_of_the_queue_and_into_training(reviewed, reviewer, labels):
    project, items = reviewed
    split = items["split"]
    before = label_snapshot(project.pk)
    # A tie goes to the earliest annotation: ada's "negative".
    assert dict(zip(before.item_ids, before.label_ids))[split.pk] == labels["negative"].pk

    services.item_resolve(item=split, label=labels["positive"], user=reviewer)
    split.refresh_from_db()
    assert (split.resolved_label, split.resolved_by) == (labels["positive"], reviewer)
    assert split.resolved_at is not None
    assert _ids(selectors.review_items(project)) == ["confident"]
    assert _ids(selectors.review_items(project, kind="resolved")) == ["split"]

    after = label_snapshot(project.pk)
    assert dict(zip(after.item_ids, after.label_ids))[split.pk] == labels["positive"].pk
    assert after.sha256 != before.sha256
    assert after.annotation_ids == before.annotation_ids
    assert item_final_labels(project.pk)[split.pk] == labels["positive"].pk

    # Another resolution is another snapshot; clearing it gives back the first.
    services.item_resolve(item=split, label=labels["negative"], user=reviewer)
    third = label_snapshot(project.pk)
    assert third.sha256 not in (before.sha256, after.sha256)
    services.item_resolve(item=split, label=None, user=reviewer)
    assert label_snapshot(project.pk).sha256 == before.sha256


def test_a_resolution_needs_a_label_of_the_project_and_an_item_with_labels(reviewed, reviewer, image_project):
    project, items = reviewed
    foreign = image_project.labels.first()
    with pytest.raises(DomainError, match="not a label of this item's project"):
        services.item_resolve(item=items["split"], label=foreign, user=reviewer)
    empty = ItemFactory(project=project)
    with pytest.raises(DomainError, match="no labels yet"):
        services.item_resolve(item=empty, label=project.labels.first(), user=reviewer)


def test_a_correction_changes_the_label_and_records_who_when_and_what_before(reviewed, reviewer, labels, experts):
    project, items = reviewed
    _, ben, _ = experts
    annotation = Annotation.objects.get(item=items["split"], annotator=ben)
    before = label_snapshot(project.pk)
    correction = services.annotation_correct(
        annotation=annotation, label=labels["negative"], user=reviewer, note="sarcasm"
    )
    annotation.refresh_from_db()
    assert annotation.label == labels["negative"]
    stored = AnnotationCorrection.objects.get()
    assert stored == correction
    assert (stored.corrected_by, stored.previous_label, stored.new_label, stored.note) == (
        reviewer, labels["positive"], labels["negative"], "sarcasm"
    )
    assert stored.corrected_at is not None
    # The experts agree now, so the item leaves the queue; training reads the corrected label.
    assert _ids(selectors.review_items(project, kind="disagreement")) == []
    assert label_snapshot(project.pk).sha256 != before.sha256
    with pytest.raises(DomainError, match="already"):
        services.annotation_correct(annotation=annotation, label=labels["negative"], user=reviewer)
    # Agreement measures the experts' own labels, before corrections: still one split item.
    result = selectors.project_agreement(project, reps=20)
    pair = result["pairwise"][0]
    assert pair["items"] == 4 and pair["agreement"] == 0.75


def test_project_agreement_pairwise_kappa_and_alpha_on_a_known_table(text_project, experts, labels):
    # ada and ben on 50 items: 20 both positive, 10 only ada, 5 only ben, 15 both negative → κ = 0.4.
    neg, pos = labels["negative"], labels["positive"]
    ada, ben, cy = experts
    plan = [(pos, pos)] * 20 + [(pos, neg)] * 10 + [(neg, pos)] * 5 + [(neg, neg)] * 15
    for i, (a, b) in enumerate(plan):
        item = ItemFactory(project=text_project)
        AnnotationFactory(item=item, annotator=ada, label=a)
        AnnotationFactory(item=item, annotator=ben, label=b)
        if i < 10:
            AnnotationFactory(item=item, annotator=cy, label=a)  # cy copies ada on ten items
    AnnotationFactory(item=ItemFactory(project=text_project), annotator=ada, label=pos)  # a single label: ignored
    result = selectors.project_agreement(text_project, reps=50)
    assert result["items"] == 50
    assert [e["username"] for e in result["experts"]] == ["ada", "ben", "cy"]
    by_pair = {tuple(p["usernames"]): p for p in result["pairwise"]}
    assert by_pair["ada", "ben"]["kappa"] == pytest.approx(0.4)
    assert by_pair["ada", "ben"]["items"] == 50
    low, high = by_pair["ada", "ben"]["kappa_interval"]
    assert low < 0.4 < high
    assert by_pair["ada", "cy"]["agreement"] == 1.0 and by_pair["ada", "cy"]["items"] == 10
    assert by_pair["ada", "cy"]["kappa"] is None  # cy only saw "positive": chance agreement is 1
    assert -1 <= result["alpha"] <= 1 and result["alpha_interval"][0] <= result["alpha"] <= result["alpha_interval"][1]
    per_expert = {e["username"]: e for e in result["per_expert"]}
    assert per_expert["cy"]["items"] == 10 and per_expert["cy"]["agreement"] == 1.0
    matrix = selectors.agreement_matrix(result)
    assert matrix[0]["cells"][0] is None and matrix[0]["cells"][1]["kappa"] == pytest.approx(0.4)


def test_gold_accuracy_per_expert_with_a_wilson_interval(text_project, experts, labels, reviewer):
    neg, pos = labels["negative"], labels["positive"]
    ada, ben, _ = experts
    golds = [ItemFactory(project=text_project) for _ in range(4)]
    for item in golds:
        services.item_gold_set(item=item, label=pos)
    for i, item in enumerate(golds):
        AnnotationFactory(item=item, annotator=ada, label=neg if i == 0 else pos)  # 3 of 4
        AnnotationFactory(item=item, annotator=ben, label=pos)  # 4 of 4
    AnnotationFactory(item=ItemFactory(project=text_project), annotator=ben, label=neg)  # not gold: not counted
    # A reviewer's correction does not make ada's mistake right.
    services.annotation_correct(
        annotation=Annotation.objects.get(item=golds[0], annotator=ada), label=pos, user=reviewer
    )
    rows = {row["username"]: row for row in selectors.gold_accuracy(text_project)}
    assert (rows["ada"]["gold_items"], rows["ada"]["correct"], rows["ada"]["accuracy"]) == (4, 3, 0.75)
    assert (rows["ben"]["gold_items"], rows["ben"]["correct"], rows["ben"]["accuracy"]) == (4, 4, 1.0)
    assert rows["ada"]["interval"] == pytest.approx([0.3006, 0.9544], abs=1e-4)
    assert rows["ben"]["interval"][1] == 1.0 and rows["ben"]["interval"][0] == pytest.approx(0.5101, abs=1e-4)
    services.item_gold_set(item=golds[0], label=None)
    assert {r["username"]: r["gold_items"] for r in selectors.gold_accuracy(text_project)} == {"ada": 3, "ben": 3}


def test_import_marks_gold_items_new_and_existing(text_project, manager, labels):
    first = "external_id,text\nq1,great stuff\nq2,awful\n"
    import_services.import_jobs_submit(project=text_project, user=manager,
                                       uploads=[("a.csv", io.BytesIO(first.encode()))], wait=True)
    again = "external_id,text,gold_label\nq1,great stuff,positive\nq2,awful,\nq3,meh,negative\n"
    (job,) = import_services.import_jobs_submit(project=text_project, user=manager,
                                                uploads=[("b.csv", io.BytesIO(again.encode()))], wait=True)
    assert (job.created_count, job.unchanged_count, job.rejected_count) == (1, 2, 0)
    gold = dict(Item.objects.filter(project=text_project).values_list("external_id", "gold_label__name"))
    assert gold == {"q1": "positive", "q2": None, "q3": "negative"}
    bad = "external_id,text,gold_label\nq4,hm,maybe\n"
    (job,) = import_services.import_jobs_submit(project=text_project, user=manager,
                                                uploads=[("c.csv", io.BytesIO(bad.encode()))], wait=True)
    assert job.rejected_count == 1 and "unknown gold_label 'maybe'" in job.errors[0]["reason"]


# REST


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def test_review_items_api_pages_with_a_cursor(client, reviewed, reviewer):
    project, _items = reviewed
    client.force_login(reviewer)
    url = reverse("api-review-items", args=[project.pk])
    first = client.get(url, {"page_size": 1})
    assert first.status_code == 200
    body = first.json()
    assert [r["external_id"] for r in body["results"]] == ["split"]
    row = body["results"][0]
    assert row["experts_disagree"] and not row["model_disagrees"]
    assert [a["annotator"] for a in row["annotations"]] == ["ada", "ben"]
    assert "gold_label" not in json.dumps(body)
    second = client.get(body["next"]).json()
    assert [r["external_id"] for r in second["results"]] == ["confident"]
    assert second["results"][0]["model_disagrees"] and second["next"] is None
    assert client.get(url, {"filter": "nope"}).status_code == 400
    assert client.get(url, {"cursor": "garbage"}).status_code == 404


def test_resolve_and_correct_apis(client, reviewed, reviewer, labels, experts):
    _project, items = reviewed
    client.force_login(reviewer)
    resolve = reverse("api-item-resolve", args=[items["split"].pk])
    response = _post(client, resolve, {"label": "positive"})
    assert response.status_code == 200, response.json()
    assert response.json()["resolved_label"] == "positive" and response.json()["resolved_by"] == "reviewer"
    assert Item.objects.get(pk=items["split"].pk).resolved_label == labels["positive"]
    assert _post(client, resolve, {}).status_code == 400
    assert _post(client, resolve, {"label": "maybe"}).json()["detail"] == "'maybe' is not a label of this project."
    assert _post(client, resolve, {"label_id": 2**70}).status_code == 400
    assert _post(client, resolve, {"clear": True}).json()["resolved_label_id"] is None

    annotation = Annotation.objects.get(item=items["split"], annotator=experts[1])
    correct = reverse("api-annotation-correct", args=[annotation.pk])
    response = _post(client, correct, {"label_id": labels["negative"].pk, "note": "sarcasm"})
    assert response.status_code == 201, response.json()
    assert response.json()["previous_label"] == "positive" and response.json()["corrected_by"] == "reviewer"
    assert _post(client, correct, {"label_id": labels["negative"].pk}).status_code == 400  # no change
    assert _post(client, reverse("api-annotation-correct", args=[10**12]), {"label": "negative"}).status_code == 404


def test_annotators_cannot_review_and_only_managers_mark_gold(client, reviewed, reviewer, manager, experts, labels):
    project, items = reviewed
    client.force_login(experts[0])
    assert _post(client, reverse("api-item-resolve", args=[items["split"].pk]), {"label": "positive"}).status_code == 404
    assert client.get(reverse("api-agreement", args=[project.pk])).status_code == 404
    gold = reverse("api-item-gold", args=[items["plain"].pk])
    client.force_login(reviewer)
    assert _post(client, gold, {"label": "negative"}).status_code == 404
    client.force_login(manager)
    response = _post(client, gold, {"label": "negative"})
    assert response.status_code == 200 and response.json()["gold_label"] == "negative"
    assert Item.objects.get(pk=items["plain"].pk).gold_label == labels["negative"]


def test_experts_cannot_tell_gold_items_apart_in_the_queue(client, text_project, annotator, labels):
    item = ItemFactory(project=text_project)
    services.item_gold_set(item=item, label=labels["positive"])
    client.force_login(annotator)
    served = _post(client, reverse("api-queue-next", args=[text_project.pk]), {})
    assert served.status_code == 200
    assert served.json()["item"]["id"] == item.pk
    assert "gold" not in json.dumps(served.json())
    page = client.get(reverse("label", args=[text_project.pk]))
    assert "gold" not in page.content.decode().lower()


def test_agreement_api_reports_agreement_and_gold(client, reviewed, reviewer, labels):
    project, items = reviewed
    services.item_gold_set(item=items["plain"], label=labels["negative"])
    client.force_login(reviewer)
    body = client.get(reverse("api-agreement", args=[project.pk])).json()
    assert body["items"] == 4 and len(body["pairwise"]) == 1
    assert body["percent_agreement"] == 0.75
    assert {g["username"]: g["accuracy"] for g in body["gold"]} == {"ada": 1.0, "ben": 1.0}


def test_review_and_agreement_pages(client, reviewed, reviewer, labels, experts):
    project, items = reviewed
    client.force_login(reviewer)
    page = client.get(reverse("review", args=[project.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert f'id="review-row-{items["split"].pk}"' in body and f'id="review-row-{items["plain"].pk}"' not in body
    assert "experts disagree" in body and "ada" in body and "ben" in body
    # The list names the labels beside their colours (colour alone tells them apart for few readers).
    row = body.split(f'id="review-row-{items["split"].pk}"', 1)[1].split("</li>", 1)[0]
    given = sorted(a.label.name for a in items["split"].annotations.all())
    assert [name for name in given if f"</span>{name}</span>" in row] == given
    # Resolving from the page answers with the next item's panel and drops the row.
    response = client.post(
        reverse("review-resolve", args=[project.pk, items["split"].pk]),
        {"label_id": labels["positive"].pk, "filter": "queue"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert f'data-item-id="{items["confident"].pk}"' in body
    assert f'<li id="review-row-{items["split"].pk}" hx-swap-oob="delete">' in body
    # The filter tabs' counts are swapped in with the answer: one fewer to review, one more resolved.
    for key, count in {"queue": 1, "disagreement": 0, "model": 1, "resolved": 1}.items():
        assert f'<span class="count" id="review-count-{key}" hx-swap-oob="true">{count}</span>' in body
    bad = client.post(reverse("review-resolve", args=[project.pk, items["split"].pk]), {"label_id": "x"})
    assert bad.status_code == 400 and "review-error" in bad.content.decode()
    annotation = Annotation.objects.get(item=items["confident"], annotator=experts[0])
    corrected = client.post(
        reverse("review-correct", args=[project.pk, annotation.pk]), {"label_id": labels["positive"].pk, "note": "ok"}
    )
    assert corrected.status_code == 200 and "was negative → positive by reviewer" in corrected.content.decode()
    agreement = client.get(reverse("agreement", args=[project.pk]))
    assert agreement.status_code == 200 and "Krippendorff" in agreement.content.decode()


def test_admin_action_makes_items_gold_with_their_final_label(client, reviewed, reviewer, labels):
    project, items = reviewed
    staff = UserFactory(username="root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    services.item_resolve(item=items["split"], label=labels["positive"], user=reviewer)
    unlabeled = ItemFactory(project=project)
    client.force_login(staff)
    chosen = [items["split"].pk, items["plain"].pk, unlabeled.pk]
    response = client.post(
        reverse("admin:annotations_item_changelist"),
        {"action": "make_gold_from_final_label", "_selected_action": chosen, "index": 0},
        follow=True,
    )
    assert "2 item(s) made gold; 1 without labels" in response.content.decode()
    gold = dict(Item.objects.filter(pk__in=chosen).values_list("pk", "gold_label__name"))
    assert gold == {items["split"].pk: "positive", items["plain"].pk: "negative", unlabeled.pk: None}
