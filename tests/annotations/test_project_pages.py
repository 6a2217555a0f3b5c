"""The new-project page, the settings page and its labels editor: who may, what is stored, what bad input shows."""
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from annotations.models import Label, Membership, Project
from tests.factories import AnnotationFactory, ItemFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def new_project_body(**changes) -> dict[str, str]:
    body = {
        "name": "Chest X-rays", "kind": "image", "instructions": "**Look** at the lungs.", "query_strategy": "margin",
        "audit_share": "0.1", "overlap": "1", "show_suggestions": "on",
        "labels-TOTAL_FORMS": "3", "labels-INITIAL_FORMS": "0", "labels-MIN_NUM_FORMS": "0",
        "labels-MAX_NUM_FORMS": "200",
        "labels-0-name": "normal", "labels-0-shortcut": "n", "labels-0-color": "#4e79a7",
        "labels-1-name": "pneumonia", "labels-1-shortcut": "p", "labels-1-color": "#f28e2b",
        "labels-2-name": "", "labels-2-shortcut": "", "labels-2-color": "#e15759",
    }
    return {**body, **changes}


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True)


def test_staff_create_a_project_with_its_labels_and_land_on_its_import_page(client, staff):
    client.force_login(staff)
    page = client.get(reverse("project-new"))
    assert page.status_code == 200 and b'value="#4e79a7"' in page.content and b'value="#f28e2b"' in page.content

    response = client.post(reverse("project-new"), new_project_body())

    project = Project.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("project-import", args=[project.pk])
    assert (project.slug, project.kind, project.instructions) == ("chest-x-rays", "image", "**Look** at the lungs.")
    assert [(label.name, label.shortcut, label.color) for label in project.labels.order_by("order")] == [
        ("normal", "n", "#4e79a7"), ("pneumonia", "p", "#f28e2b")]
    assert project.memberships.get().role == Membership.Role.MANAGER


def test_the_project_list_offers_new_project_to_those_allowed_only(client, staff, manager):
    client.force_login(staff)
    assert reverse("project-new").encode() in client.get(reverse("home")).content
    client.force_login(manager)
    assert reverse("project-new").encode() not in client.get(reverse("home")).content
    assert client.get(reverse("project-new")).status_code == 403
    assert client.post(reverse("project-new"), new_project_body()).status_code == 403 and not Project.objects.exists()


def test_a_user_given_the_permission_creates_a_project(client, manager):
    manager.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotations"))
    client.force_login(manager)
    assert reverse("project-new").encode() in client.get(reverse("home")).content
    response = client.post(reverse("project-new"), new_project_body())
    assert response.status_code == 302 and Project.objects.get().memberships.get().user == manager


@pytest.mark.parametrize("changes, message", [
    ({"audit_share": "1.5"}, "Ensure this value is less than or equal to 1.0."),
    ({"overlap": "0"}, "Ensure this value is greater than or equal to 1."),
    ({"kind": "video"}, "Select a valid choice."),
    ({"name": ""}, "This field is required."),
    ({"labels-1-shortcut": "n"}, "Two labels have the key “n”"),
    ({"labels-1-name": "Normal"}, "Two labels are named “Normal”"),
    ({"labels-1-name": ""}, "Add at least 2 labels"),
    ({"labels-0-color": "red"}, "Use a hex colour such as #4e79a7."),
    ({"labels-TOTAL_FORMS": "5000"}, "Please submit at most 200 forms."),
])
def test_bad_input_shows_a_message_and_stores_nothing(client, staff, changes, message):
    client.force_login(staff)
    response = client.post(reverse("project-new"), new_project_body(**changes))
    assert response.status_code == 400 and message in response.content.decode()
    assert not Project.objects.exists() and not Label.objects.exists()


def test_managers_see_every_setting_in_sections(client, text_project, manager):
    client.force_login(manager)
    page = client.get(reverse("project-settings", args=[text_project.pk])).content.decode()
    for section in ("Queue", "Retraining", "Promotion of a retrained model", "Data drift", "Labels"):
        assert f">{section}</h2>" in page
    from annotations.project_apis import PROJECT_SETTINGS

    for name in PROJECT_SETTINGS:
        assert f'name="{name}"' in page, name
    assert "Share of served items drawn uniformly at random" in page  # the model's help text


@pytest.mark.parametrize("role", ["annotator", "reviewer"])
def test_annotators_and_reviewers_cannot_reach_settings(client, text_project, role):
    user = UserFactory(username=f"a-{role}")
    MembershipFactory(project=text_project, user=user, role=role)
    label = text_project.labels.first()
    client.force_login(user)
    assert client.get(reverse("project-settings", args=[text_project.pk])).status_code == 404
    assert client.post(reverse("project-settings", args=[text_project.pk]), {"audit_share": "0.5"}).status_code == 404
    assert client.post(reverse("project-label-change", args=[text_project.pk, label.pk]),
                       {"action": "delete"}).status_code == 404
    assert Label.objects.filter(pk=label.pk).exists()


def settings_body(project: Project, **changes) -> dict[str, str]:
    from annotations.project_forms import ProjectSettingsForm

    form = ProjectSettingsForm(instance=project)
    body = {name: "" if value is None else value for name, value in form.initial.items() if name in form.fields}
    body = {k: v for k, v in body.items() if v is not False}
    return {**body, **changes}


def test_settings_are_saved_with_the_services_side_effects(client, text_project, manager, sent_tasks,
                                                            django_capture_on_commit_callbacks):
    client.force_login(manager)
    url = reverse("project-settings", args=[text_project.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, settings_body(text_project, audit_share="0.25", retrain_interval_minutes="60"))
    assert response.status_code == 302
    text_project.refresh_from_db()
    assert (text_project.audit_share, text_project.retrain_interval_minutes) == (0.25, 60)
    assert ("learner.schedule_sync", [text_project.pk]) in sent_tasks


def test_bad_settings_show_a_message_per_field_and_store_nothing(client, text_project, manager):
    client.force_login(manager)
    url = reverse("project-settings", args=[text_project.pk])
    response = client.post(url, settings_body(text_project, audit_share="3", overlap="0", lease_ttl_seconds="10"))
    page = response.content.decode()
    assert response.status_code == 400 and "Nothing was saved: 2 settings to correct below." in page
    assert "Audit share: Ensure this value is less than or equal to 1.0." in page
    assert "Overlap: Ensure this value is greater than or equal to 1." in page
    text_project.refresh_from_db()
    assert (text_project.audit_share, text_project.overlap, text_project.lease_ttl_seconds) == (0.1, 1, 600)


def test_labels_editor_adds_renames_refuses_a_taken_key_and_merges(client, text_project, manager, annotator):
    negative, positive = text_project.labels.order_by("order")
    AnnotationFactory(item=ItemFactory(project=text_project), annotator=annotator, label=negative)
    client.force_login(manager)
    settings_url = reverse("project-settings", args=[text_project.pk])
    change = lambda label, **body: client.post(  # noqa: E731
        reverse("project-label-change", args=[text_project.pk, label.pk]), body, follow=True).content.decode()

    added = client.post(reverse("project-label-add", args=[text_project.pk]),
                        {"name": "neutral", "shortcut": "3", "color": "#76b7b2"})
    assert added.status_code == 302 and text_project.labels.filter(name="neutral", shortcut="3").exists()
    taken = client.post(reverse("project-label-add", args=[text_project.pk]), {"name": "mixed", "shortcut": "1",
                                                                              "color": "#76b7b2"})
    assert taken.status_code == 400 and "Another label already has the key “1”." in taken.content.decode()

    assert "Label “good” saved." in change(positive, action="save", name="good", shortcut="2", color="#59a14f")
    assert "Another label already has the key “3”." in change(negative, action="save", name="negative",
                                                              shortcut="3", color="#4e79a7")
    refused = change(negative, action="delete")
    assert "“negative” is used by 1 annotation, so it cannot be deleted" in refused
    merged = change(negative, action="merge", into=str(positive.pk))
    assert "“negative” is merged into “good”" in merged and "retrain" in merged
    assert list(text_project.labels.order_by("order").values_list("name", flat=True)) == ["good", "neutral"]
    assert client.get(settings_url).status_code == 200


def test_the_labeling_page_links_managers_to_the_settings_when_there_are_no_labels(client, manager, annotator):
    project = Project.objects.create(name="Empty", slug="empty", kind="text")
    MembershipFactory(project=project, user=manager, role=Membership.Role.MANAGER)
    MembershipFactory(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    settings_link = f'href="{reverse("project-settings", args=[project.pk])}"'
    client.force_login(manager)
    assert settings_link in client.get(reverse("label", args=[project.pk])).content.decode()
    client.force_login(annotator)
    page = client.get(reverse("label", args=[project.pk])).content.decode()
    assert settings_link not in page and "A manager of the project adds them." in page


def test_managers_choose_the_metadata_experts_see_as_names_not_json(client, text_project, manager):
    client.force_login(manager)
    url = reverse("project-settings", args=[text_project.pk])
    assert client.post(url, settings_body(text_project, shown_metadata_fields=" source , date,,")).status_code == 302
    text_project.refresh_from_db()
    assert text_project.shown_metadata_fields == ["source", "date"]
    assert 'value="source, date"' in client.get(url).content.decode()
    too_many = ", ".join(f"field{i}" for i in range(21))
    response = client.post(url, settings_body(text_project, shown_metadata_fields=too_many))
    assert response.status_code == 400 and "at most 20 metadata fields" in response.content.decode()
    text_project.refresh_from_db()
    assert text_project.shown_metadata_fields == ["source", "date"]
