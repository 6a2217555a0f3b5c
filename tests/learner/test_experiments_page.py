"""Experiments page: a manager starts an experiment from the form; the service's refusals are shown in the page."""
import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from annotations.models import Membership
from learner.models import Experiment, ModelVersion
from learner.services import models as model_services
from learner.services.models import model_version_promote
from tests.factories import MembershipFactory, UserFactory
from tests.learner.test_predict_and_experiments import _version

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(tabular_project):
    """A live v1; v2 and v3 may challenge it; v4's file was removed; v5 was trained on other features."""
    model_services._cache.clear()
    project = tabular_project
    project.feature_names = ["x0", "x1"]
    project.save()
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    made = [_version(project, X, y) for _ in range(5)]
    model_version_promote(made[0], reason="first", trigger="manual")
    ModelVersion.objects.filter(pk=made[3].pk).update(artifact_removed_at=timezone.now())
    ModelVersion.objects.filter(pk=made[4].pk).update(feature_space="tabular-v1:3")
    return project


def start(client, project, **form):
    return client.post(reverse("experiment-start", args=[project.pk]), form)


def test_the_form_offers_only_the_versions_that_may_challenge_the_live_one(client, versions, manager):
    client.force_login(manager)
    page = client.get(reverse("project-experiments", args=[versions.pk])).content.decode()
    form = page[page.index('id="experiment-challenger"'):page.index("</select>")]
    assert '<option value="3"' in form and '<option value="2"' in form
    assert 'value="1"' not in form and 'value="4"' not in form and 'value="5"' not in form


def test_a_manager_starts_a_shadow_experiment_from_the_page(client, versions, manager):
    client.force_login(manager)
    response = start(client, versions, challenger="3", mode="shadow", traffic_share="10", alpha="0.01", looks="2",
                     min_gain="", min_sample="500")

    assert response.status_code == 302
    experiment = Experiment.objects.get(project=versions)
    assert (experiment.status, experiment.mode, experiment.challenger.number, experiment.champion.number) == (
        "running", "shadow", 3, 1)
    assert experiment.traffic_share == 0.0 and experiment.created_by == manager
    assert experiment.rule["alpha"] == 0.01 and experiment.rule["looks"] == 2 and experiment.rule["min_sample"] >= 500
    page = client.get(response.url).content.decode()
    assert "Experiment" in page and "started: v3 against the live v1, shadow." in page
    assert "Stop and keep the champion" in page and 'id="experiment-challenger"' not in page


def test_a_split_from_the_page_takes_its_share_in_percent(client, versions, manager):
    client.force_login(manager)
    assert start(client, versions, challenger="2", mode="split", traffic_share="25").status_code == 302
    experiment = Experiment.objects.get(project=versions)
    assert experiment.mode == "split" and experiment.traffic_share == 0.25


@pytest.mark.parametrize(("form", "status", "message"), [
    ({"challenger": "1", "mode": "shadow"}, 400, "The challenger is the live version."),
    ({"challenger": "4", "mode": "shadow"}, 400, "Version 4’s model file was removed by retention"),
    ({"challenger": "5", "mode": "shadow"}, 400, "The two versions were trained on different features, and no featurizer"),
    ({"challenger": "99", "mode": "shadow"}, 404, "Version 99 not found."),
    ({"challenger": "2", "mode": "split", "traffic_share": "100"}, 400, "between 0 and 1 (exclusive)"),
    ({"challenger": "2", "mode": "split", "traffic_share": "ten"}, 400, "Traffic share: give a percentage"),
    ({"challenger": "2", "mode": "shadow", "alpha": "0.9"}, 400, "α: Ensure this value is less than or equal to 0.5."),
    ({"challenger": "2", "mode": "shadow", "looks": "1000"}, 400, "Looks: Ensure this value is less than or equal"),
    ({"challenger": "x", "mode": "sideways"}, 400, "Mode: &quot;sideways&quot; is not a valid choice."),
    ({"mode": "shadow"}, 400, "Challenger: This field is required."),
])
def test_a_bad_start_shows_why_and_starts_nothing(client, versions, manager, form, status, message):
    client.force_login(manager)
    response = start(client, versions, **form)

    assert response.status_code == status
    assert message.replace("’", "&#x27;") in response.content.decode() or message in response.content.decode()
    assert not Experiment.objects.filter(project=versions).exists()
    # What was typed stays in the form.
    if form.get("challenger") == "2":
        assert '<option value="2" selected' in response.content.decode()


def test_a_second_start_while_one_runs_is_refused_in_words(client, versions, manager):
    client.force_login(manager)
    start(client, versions, challenger="2", mode="shadow")
    response = start(client, versions, challenger="3", mode="shadow")

    assert response.status_code == 409
    assert "An experiment is already running in this project; stop it first." in response.content.decode()
    assert Experiment.objects.filter(project=versions).count() == 1


def test_only_managers_start_experiments(client, versions):
    reviewer = UserFactory(username="reviews")
    MembershipFactory(project=versions, user=reviewer, role=Membership.Role.REVIEWER)
    client.force_login(reviewer)
    assert start(client, versions, challenger="2", mode="shadow").status_code == 404
    assert not Experiment.objects.exists()
