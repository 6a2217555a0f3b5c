"""factory_boy factories for the project's models."""
import hashlib

import factory
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from annotations.models import Annotation, Item, Label, Membership, Project
from learner.models import ModelVersion, SwapHistory


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"expert{n}")

    @factory.post_generation
    def password(obj, create, extracted, **kwargs):
        obj.set_password(extracted or "pass-word-123")
        if create:
            obj.save(update_fields=["password"])


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    kind = Project.Kind.TEXT


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"label{n}")
    order = factory.Sequence(lambda n: n)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ANNOTATOR


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda n: f"item-{n}")
    text = factory.Sequence(lambda n: f"text number {n}")
    content_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.text.encode()).hexdigest())


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation

    item = factory.SubFactory(ItemFactory)
    annotator = factory.SubFactory(UserFactory)
    label = factory.SubFactory(LabelFactory, project=factory.SelfAttribute("..item.project"))


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A version as the versions pages and API list it, without an artifact: nothing here can load it."""

    class Meta:
        model = ModelVersion

    project = factory.SubFactory(ProjectFactory)
    number = factory.Sequence(lambda n: n + 1)
    status = ModelVersion.Status.RETIRED
    algorithm = "logistic regression"
    feature_space = "tabular-v1"
    artifact_name = factory.LazyAttribute(lambda o: f"missing-v{o.number}.skops")
    artifact_sha256 = "0" * 64
    label_snapshot_hash = factory.LazyAttribute(lambda o: hashlib.sha256(f"v{o.number}".encode()).hexdigest())
    labels_used = factory.LazyAttribute(lambda o: 10 * o.number)
    # An evaluation on 80 audit labels, better with each version.
    metrics = factory.LazyAttribute(lambda o: {"n": 80, "accuracy": min(1.0, 0.5 + o.number / 1000),
                                               "accuracy_ci": [0.4, min(1.0, 0.6 + o.number / 1000)]})


class SwapHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SwapHistory

    project = factory.SelfAttribute("to_version.project")
    to_version = factory.SubFactory(ModelVersionFactory)
    reason = "Promoted: beats the champion"
    trigger = "count"


def api_token_for(user) -> str:
    """A new API token of the user, as a client sends it (the database keeps only its digest)."""
    _token, key = AuthToken.objects.create(user=user)
    return key


def api_client_for(project: Project, name: str = "service"):
    """An API client of the project, as a manager makes one: (its user, a Django test client sending its token)."""
    from django.test import Client

    from annotations.services import api_client_create

    user, key = api_client_create(project=project, name=name)
    return user, Client(HTTP_AUTHORIZATION=f"Token {key}")
