"""factory_boy factories for the project's models."""
import hashlib

import factory
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from annotations.models import Annotation, Item, Label, Membership, Project


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
