"""Predictions and feedback belong to API clients: nobody steers an experiment's arm or judges another's predictions."""
import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotations.models import Membership
from learner.models import Experiment, LiveModel, ModelVersion, PredictionCorrection, PredictionLog
from learner.services import experiments as experiment_services
from learner.services.predict import CHALLENGER, client_arm
from tests.factories import AnnotationFactory, MembershipFactory, UserFactory, api_client_for
from tests.learner.conftest import blob_items
from tests.learner.test_predict_and_experiments import _fresh_model_cache, _version, blobs  # noqa: F401 -- fixtures

pytestmark = pytest.mark.django_db


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def _predict(client, project, body):
    return _post(client, reverse("api-predict", args=[project.pk]), body)


def _feedback(client, project, prediction_id, body):
    return _post(client, reverse("api-prediction-feedback", args=[project.pk, prediction_id]), body)


@pytest.fixture
def rejected(blobs):
    """The experiment the attacker wants: a split against a challenger the gate rejected (it is wrong everywhere)."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, 2)) * 2.5
    worse = _version(blobs, X, (X[:, 0] + X[:, 1] <= 0).astype(int))
    ModelVersion.objects.filter(pk=worse.pk).update(status=ModelVersion.Status.REJECTED)
    manager = Membership.objects.get(project=blobs, role="manager").user
    experiment = experiment_services.experiment_start(
        project=blobs, user=manager, challenger_number=worse.number, mode="split", traffic_share=0.5,
        looks=4, min_gain=0.1,
    )
    assert experiment.rule["look_at"][:2] == [121, 242]  # the first looks come after a few hundred outcomes
    return experiment


def _steer(client, project, arms_seen: dict[str, list[dict]], body: dict) -> None:
    """Predict 250 rows; keep the answers by the version that gave them."""
    rng = np.random.default_rng(len(arms_seen) + 1)
    rows = [{"values": [float(a), float(b)]} for a, b in rng.normal(size=(250, 2)) * 2.5]
    response = _predict(client, project, {"items": rows, **body})
    if response.status_code == 200:
        for answer in response.json()["predictions"]:
            arms_seen.setdefault(answer["model_version"], []).append(answer)


def test_an_annotator_cannot_steer_a_split_experiment(client, blobs, rejected):
    """Issue 17's attack: pick the arm by caller, agree with the challenger's answers, disagree with the champion's."""
    annotator = UserFactory(username="hostile")
    MembershipFactory(project=blobs, user=annotator, role="annotator")
    client.force_login(annotator)
    seen: dict[int, list[dict]] = {}
    for i in range(40):
        _steer(client, blobs, seen, {"caller": f"caller-{i}"})
        if all(len(seen.get(v, [])) >= 250 for v in (1, rejected.challenger.number)):
            break
    refusals = [_predict(client, blobs, {"values": [1, 1]}).status_code]
    for version, answers in seen.items():
        for answer in answers:
            agree = version == rejected.challenger.number
            label = answer["label"] if agree else next(n for n in ("class_0", "class_1") if n != answer["label"])
            refusals.append(_feedback(client, blobs, answer["prediction_id"], {"label": label}).status_code)
    # Refused outright: not one prediction served, not one feedback taken.
    assert set(refusals) == {404} and not seen
    assert not PredictionLog.objects.filter(project_id=blobs.pk).exists()
    experiment = experiment_services.experiment_evaluate(rejected.pk)
    assert experiment.status == Experiment.Status.RUNNING
    assert LiveModel.objects.get(project=blobs).version_id == blobs.versions["champion"].pk


def test_a_client_cannot_choose_its_arm_nor_steer_with_its_feedback(blobs, rejected):
    """A client may not send caller keys; all its traffic lands on its one arm, so its feedback can only judge that."""
    user, hostile = api_client_for(blobs, "hostile")
    refused = _predict(hostile, blobs, {"items": [{"values": [1, 1]}], "caller": "caller-7"})
    assert refused.status_code == 400 and "caller" in refused.json()["detail"]
    seen: dict[int, list[dict]] = {}
    _steer(hostile, blobs, seen, {})
    assert len(seen) == 1, "one client, one arm"
    (version, answers), = seen.items()
    on_challenger = client_arm(rejected, user.pk) == CHALLENGER
    assert version == (rejected.challenger.number if on_challenger else 1)
    for answer in answers:  # agree with the challenger, disagree with the champion
        label = answer["label"] if on_challenger else next(n for n in ("class_0", "class_1") if n != answer["label"])
        assert _feedback(hostile, blobs, answer["prediction_id"], {"label": label}).status_code == 200
    experiment = experiment_services.experiment_evaluate(rejected.pk)
    assert experiment.looks_done >= 1, experiment.results  # the looks were taken, on one-armed evidence
    assert experiment.status == Experiment.Status.RUNNING
    assert experiment.results["arms"]["champion" if on_challenger else "challenger"]["n"] == 0
    assert LiveModel.objects.get(project=blobs).version_id == blobs.versions["champion"].pk


def test_the_arm_is_the_authenticated_clients(client, blobs, manager):
    client.force_login(manager)
    experiment = experiment_services.experiment_start(
        project=blobs, user=manager, challenger_number=blobs.versions["better"].number, mode="split",
        traffic_share=0.5)
    for i in range(8):
        user, service = api_client_for(blobs, f"s{i}")
        answers = [_predict(service, blobs, {"values": [float(k), 1.0]}).json() for k in range(3)]
        expected = blobs.versions["better"].number if client_arm(experiment, user.pk) == CHALLENGER else 1
        assert {a["model_version"] for a in answers} == {expected}
        logs = PredictionLog.objects.filter(pk__in=[a["prediction_id"] for a in answers])
        assert {(log.client_id, log.arm) for log in logs} == {(user.pk, client_arm(experiment, user.pk))}


def test_reviewers_and_annotators_give_no_feedback_and_clients_only_on_their_own(client, blobs, manager):
    owner, as_owner = api_client_for(blobs, "owner")
    _other, as_other = api_client_for(blobs, "other")
    prediction = _predict(as_owner, blobs, {"values": [3, 3]}).json()["prediction_id"]
    for role in ("annotator", "reviewer"):
        member = UserFactory(username=f"a-{role}")
        MembershipFactory(project=blobs, user=member, role=role)
        client.force_login(member)
        assert _feedback(client, blobs, prediction, {"label": "class_1"}).status_code == 404, role
    assert _feedback(as_other, blobs, prediction, {"label": "class_1"}).status_code == 404
    assert PredictionLog.objects.get(pk=prediction).true_label_id is None
    # A client of another project is a stranger here.
    other_project = blobs.__class__.objects.create(name="Elsewhere", slug="elsewhere", kind="tabular")
    _, as_stranger = api_client_for(other_project, "owner")
    assert _feedback(as_stranger, blobs, prediction, {"label": "class_1"}).status_code == 404
    assert _predict(as_stranger, blobs, {"values": [3, 3]}).status_code == 404
    answered = _feedback(as_owner, blobs, prediction, {"label": "class_1"})
    assert answered.status_code == 200 and answered.json()["corrected"] is False
    log = PredictionLog.objects.get(pk=prediction)
    assert (log.true_label_id, log.outcome_source, log.outcome_by_id) == (
        blobs.labels.get(name="class_1").pk, "feedback", owner.pk)


def test_feedback_is_given_once_and_a_correction_is_recorded_and_counts_once(client, blobs, manager):
    client.force_login(manager)
    experiment = experiment_services.experiment_start(
        project=blobs, user=manager, challenger_number=blobs.versions["better"].number, mode="shadow")
    owner, as_owner = api_client_for(blobs, "owner")
    rows = [{"values": [float(k), 1.0]} for k in range(4)]
    answers = _predict(as_owner, blobs, {"items": rows}).json()["predictions"]
    first = answers[0]["prediction_id"]
    class_0, class_1 = blobs.labels.get(name="class_0"), blobs.labels.get(name="class_1")
    for answer in answers:
        assert _feedback(as_owner, blobs, answer["prediction_id"], {"label": "class_1"}).status_code == 200
    # The same answer again is a retry: nothing changes, nothing is recorded.
    again = _feedback(as_owner, blobs, first, {"label_id": class_1.pk})
    assert again.status_code == 200 and again.json()["corrected"] is False
    # Another answer is refused unless it says it corrects.
    changed = _feedback(as_owner, blobs, first, {"label": "class_0"})
    assert changed.status_code == 409 and "correction" in changed.json()["detail"]
    assert PredictionLog.objects.get(pk=first).true_label_id == class_1.pk
    before = experiment_services.experiment_evaluate(experiment.pk).results["arms"]["champion"]
    corrected = _feedback(as_owner, blobs, first, {"label": "class_0", "correction": True, "note": "typo upstream"})
    assert corrected.status_code == 200 and corrected.json()["corrected"] is True
    row = PredictionCorrection.objects.get()
    assert (row.prediction_id, row.label_before_id, row.label_after_id, row.source_before, row.corrected_by,
            row.note, row.experiment_id) == (first, class_1.pk, class_0.pk, "feedback", owner, "typo upstream",
                                             experiment.pk)
    assert PredictionLog.objects.get(pk=first).true_label_id == class_0.pk
    # The corrected prediction still counts once, with its new outcome.
    after = experiment_services.experiment_evaluate(experiment.pk).results
    assert after["arms"]["champion"]["n"] == before["n"] == 4 and after["corrected"] == 1
    label_of_first = PredictionLog.objects.get(pk=first).label_id
    delta = (label_of_first == class_0.pk) - (label_of_first == class_1.pk)
    assert after["arms"]["champion"]["correct"] == before["correct"] + delta
    # A manager may correct any prediction; each change is another record.
    client.force_login(manager)
    by_manager = _feedback(client, blobs, first, {"label": "class_1", "correction": True})
    assert by_manager.status_code == 200 and by_manager.json()["corrected"] is True
    assert list(PredictionCorrection.objects.values_list("corrected_by__username", "label_after_id")) == [
        ("manager", class_1.pk), (owner.username, class_0.pk)]
    assert experiment_services.experiment_evaluate(experiment.pk).results["arms"]["champion"]["n"] == 4


def test_a_manager_gives_feedback_on_any_prediction_and_alone_corrects_an_expert_outcome(client, blobs, manager):
    experiment = experiment_services.experiment_start(
        project=blobs, user=manager, challenger_number=blobs.versions["better"].number, mode="shadow")
    _owner, as_owner = api_client_for(blobs, "owner")
    items = blob_items(blobs, np.random.default_rng(3), 2)
    answers = _predict(as_owner, blobs, {"items": [{"item_id": item.pk} for item in items]}).json()["predictions"]
    class_0, class_1 = blobs.labels.get(name="class_0"), blobs.labels.get(name="class_1")
    client.force_login(manager)
    # Feedback by a manager on a client's prediction (manager override).
    assert _feedback(client, blobs, answers[1]["prediction_id"], {"label": "class_1"}).status_code == 200
    assert PredictionLog.objects.get(pk=answers[1]["prediction_id"]).outcome_by_id == manager.pk
    # An expert labels the first item: that label becomes its prediction's outcome.
    AnnotationFactory(item=items[0], annotator=manager, label=class_0)
    experiment_services.experiment_outcomes_match(blobs.pk)
    log = PredictionLog.objects.get(pk=answers[0]["prediction_id"])
    assert (log.true_label_id, log.outcome_source) == (class_0.pk, "expert")
    refused = _feedback(as_owner, blobs, log.pk, {"label": "class_1", "correction": True})
    assert refused.status_code == 409 and "expert" in refused.json()["detail"]
    assert _feedback(client, blobs, log.pk, {"label": "class_1", "correction": True}).status_code == 200
    row = PredictionCorrection.objects.get()
    assert (row.source_before, row.label_before_id, row.label_after_id, row.corrected_by) == (
        "expert", class_0.pk, class_1.pk, manager)
    assert experiment.pk == row.experiment_id


def test_managers_create_clients_over_rest_and_a_client_does_nothing_else(client, blobs, manager):
    client.force_login(manager)
    url = reverse("api-clients", args=[blobs.pk])
    created = _post(client, url, {"name": "web-shop"})
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    body = created.json()
    assert body["username"] == f"web-shop@{blobs.slug}" and body["token"]
    assert _post(client, url, {"name": "web-shop"}).status_code == 409
    assert _post(client, url, {"name": "no spaces"}).status_code == 400
    assert _post(client, url, {"name": "x" * 41}).status_code == 400
    listing = client.get(url).json()
    assert [(c["username"], c["managed"]) for c in listing] == [(body["username"], True)]
    token = {"HTTP_AUTHORIZATION": f"Token {body['token']}"}
    from django.test import Client

    service = Client(**token)
    assert _predict(service, blobs, {"values": [1, 1]}).status_code == 200
    # Nothing else of the project: no labeling, no reading, no managing, no pages.
    assert service.post(reverse("api-queue-next", args=[blobs.pk])).status_code == 404
    assert service.get(reverse("api-project", args=[blobs.pk])).status_code == 404
    assert service.get(url).status_code == 404
    assert service.get(reverse("api-experiments", args=[blobs.pk])).status_code == 404
    assert [p["role"] for p in service.get(reverse("api-projects")).json()] == ["client"]
    # A new token replaces the old one; removal revokes it.
    renewed = _post(client, reverse("api-client-token", args=[blobs.pk, body["id"]]), {})
    assert renewed.status_code == 200 and renewed.json()["token"] != body["token"]
    assert _predict(service, blobs, {"values": [1, 1]}).status_code == 401
    service = Client(HTTP_AUTHORIZATION=f"Token {renewed.json()['token']}")
    assert _predict(service, blobs, {"values": [1, 1]}).status_code == 200
    assert client.delete(reverse("api-client", args=[blobs.pk, body["id"]])).status_code == 204
    assert _predict(service, blobs, {"values": [1, 1]}).status_code == 401
    assert client.get(url).json() == []


def test_a_manager_issues_tokens_only_for_client_accounts_of_the_project_alone(client, blobs, manager, annotator):
    # Making a person a client does not let the manager take over their account.
    MembershipFactory(project=blobs, user=annotator, role="client")
    client.force_login(manager)
    assert _post(client, reverse("api-client-token", args=[blobs.pk, annotator.pk]), {}).status_code == 404
    assert client.delete(reverse("api-client", args=[blobs.pk, annotator.pk])).status_code == 404
    assert _post(client, reverse("api-client-token", args=[blobs.pk, manager.pk]), {}).status_code == 404
    assert _post(client, reverse("api-client-token", args=[blobs.pk, 2**63 + 1]), {}).status_code == 404
    # Nor a client account that serves another project too.
    user, _ = api_client_for(blobs, "shared")
    other = blobs.__class__.objects.create(name="Elsewhere", slug="elsewhere", kind="tabular")
    MembershipFactory(project=other, user=user, role="client")
    assert _post(client, reverse("api-client-token", args=[blobs.pk, user.pk]), {}).status_code == 404
    listing = {c["username"]: c["managed"] for c in client.get(reverse("api-clients", args=[blobs.pk])).json()}
    assert listing == {annotator.username: False, user.username: False}


def test_a_client_made_from_an_annotator_can_no_longer_use_its_leases(client, text_project, annotator):
    from annotations.services import queue_next
    from tests.factories import ItemFactory

    ItemFactory(project=text_project)
    lease = queue_next(project=text_project, user=annotator)
    assert lease is not None
    Membership.objects.filter(project=text_project, user=annotator).update(role="client")
    client.force_login(annotator)
    label = text_project.labels.first()
    response = _post(client, reverse("api-lease-submit", args=[lease.pk]), {"label_id": label.pk})
    assert response.status_code == 404
    assert client.get(reverse("project-detail", args=[text_project.pk])).status_code == 404
    assert text_project.name not in client.get(reverse("home")).content.decode()


def test_the_clients_page_creates_renews_and_removes(client, blobs, manager):
    client.force_login(manager)
    url = reverse("project-clients", args=[blobs.pk])
    page = client.get(url)
    assert page.status_code == 200 and "No API clients yet" in page.content.decode()
    created = client.post(url, {"action": "create", "name": "crm"})
    html = created.content.decode()
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    assert f"crm@{blobs.slug}" in html and "not shown again" in html
    user = Membership.objects.get(project=blobs, role="client").user
    key = html.split('id="api-client-token">')[1].split("<")[0]
    from django.test import Client

    assert _predict(Client(HTTP_AUTHORIZATION=f"Token {key}"), blobs, {"values": [1, 1]}).status_code == 200
    # The token is not on the page any more once shown.
    assert key not in client.get(url).content.decode()
    renewed = client.post(url, {"action": "token", "client_id": str(user.pk)}).content.decode()
    new_key = renewed.split('id="api-client-token">')[1].split("<")[0]
    assert new_key != key
    bad = client.post(url, {"action": "create", "name": "bad name!"}, follow=True).content.decode()
    assert "letters, digits" in bad
    for bad_id in ("x", "²", "-3", str(2**64)):  # a message, not a 500
        assert client.post(url, {"action": "token", "client_id": bad_id}).status_code == 200
    removed = client.post(url, {"action": "remove", "client_id": str(user.pk)}, follow=True).content.decode()
    assert "is removed" in removed and "No API clients yet" in removed
    assert _predict(Client(HTTP_AUTHORIZATION=f"Token {new_key}"), blobs, {"values": [1, 1]}).status_code == 401
    nav = client.get(reverse("project-experiments", args=[blobs.pk])).content.decode()
    assert url in nav


def test_the_command_creates_a_client_and_renews_its_token(blobs, capsys):
    call_command("api_client", "--project", blobs.slug, "--name", "batch-job")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"API client batch-job@{blobs.slug}") and len(out[1]) >= 20
    from django.test import Client

    assert _predict(Client(HTTP_AUTHORIZATION=f"Token {out[1]}"), blobs, {"values": [1, 1]}).status_code == 200
    call_command("api_client", "--project", str(blobs.pk), "--name", "batch-job", "--new-token")
    renewed = capsys.readouterr().out.splitlines()[1]
    assert renewed != out[1]
    with pytest.raises(CommandError, match="taken"):
        call_command("api_client", "--project", blobs.slug, "--name", "batch-job")
    with pytest.raises(CommandError, match="No API client 'nobody'"):
        call_command("api_client", "--project", blobs.slug, "--name", "nobody", "--new-token")
    with pytest.raises(CommandError, match="No project"):
        call_command("api_client", "--project", "nope", "--name", "x")
    with pytest.raises(CommandError, match="letters, digits"):
        call_command("api_client", "--project", blobs.slug, "--name", "a b")


def test_the_admin_action_issues_tokens_for_client_accounts_only(client, blobs, annotator):
    staff = UserFactory(username="root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    user, _ = api_client_for(blobs, "svc")
    person = MembershipFactory(project=blobs, user=annotator, role="client")
    client.force_login(staff)
    memberships = Membership.objects.filter(project=blobs, role="client")
    response = client.post(reverse("admin:annotations_membership_changelist"), {
        "action": "issue_client_tokens", "_selected_action": [str(m.pk) for m in memberships]})
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert user.username in html and "1 selected membership(s) left alone" in html
    key = html.split("<code>")[-1].split("</code>")[0]
    from django.test import Client

    assert _predict(Client(HTTP_AUTHORIZATION=f"Token {key}"), blobs, {"values": [1, 1]}).status_code == 200
    assert person.user.username not in html.split("<tbody>")[1].split("</tbody>")[0]
