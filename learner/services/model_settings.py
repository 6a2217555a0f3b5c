"""A manager's choice of what the model learns from and how: the featurizer, the classifier, the embedding field.

A new featurizer (or embedding field) recomputes the items' features in the background and a new
classifier asks for a retrain; either way the live model keeps serving until a model of the new
kind proves itself (promotion rule 'better', an A/B experiment, or a manager).
"""
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from annotations import selectors as annotation_selectors
from annotations.models import Project
from labelhub.api import DomainError
from labelhub.celery import TaskName, send_task_on_commit
from learner.ml import registry, training
from learner.ml.featurize import Featurizer
from learner.selectors import model_version_live

EMBEDDING_FIELD_MAX_CHARS = 64
EMBEDDING_FIELD_PATTERN = re.compile(r"[A-Za-z0-9_]+")
FEATURIZER_MAX_CHARS = 80  # Project.featurizer's column
SETTINGS = ("featurizer", "model_kind", "embedding_field")
# The built-in featurizers whose rows are sparse (learner.ml.featurize's TextFeaturizer and TextCountFeaturizer),
# known without building them.
SPARSE_BUILT_INS = frozenset({"text-hashed", "text-tfidf"})
MANAGERS_ONLY = "Only the project's managers choose its featurizer and model."


def featurizer_choices(project: Project) -> list[tuple[str, str]]:
    """The featurizers this project may use, as (key, label): its kind's built-ins, then the registered plugins."""
    return registry.choices(project.kind, settings.LABELHUB_FEATURIZER_PLUGINS)


def featurizer_key(project: Project) -> str:
    """The key of the featurizer the project uses (its kind's default when it chose none)."""
    return registry.key_of(project.kind, project.featurizer)


def model_settings_notice(project: Project) -> str:
    """What the project's choice still waits for, in a sentence; "" when nothing."""
    if featurizer_key(project) == registry.EMBEDDINGS and not project.embedding_dim:
        return (f"No embeddings are imported yet: items get features once an import brings their vectors (field "
                f"“{project.embedding_field}”); until then the live model keeps serving on the features it has.")
    return ""


def model_settings_get(project: Project) -> dict[str, Any]:
    """The project's featurizer and model with their choices, its embeddings, the last feature error, the live model."""
    choices = featurizer_choices(project)
    key = featurizer_key(project)
    live = model_version_live(project.pk)
    return {
        "featurizer": {"key": key, "label": _featurizer_label(key, dict(choices))},
        "featurizer_choices": [{"key": k, "label": label} for k, label in choices],
        "model_kind": project.model_kind,
        "model_kind_label": _model_label(project.model_kind),
        "model_choices": [{"key": k, "label": _model_label(k)} for k in training.MODELS],
        "embedding_field": project.embedding_field,
        "embedding_dim": project.embedding_dim,
        "features_error": project.features_error,
        "notice": model_settings_notice(project),
        "live": None if live is None else {
            "number": live.number, "algorithm": live.algorithm, "feature_space": live.feature_space},
    }


def model_settings_update(
    *, project: Project, user: AbstractBaseUser, featurizer: str | None = None, model_kind: str | None = None,
    embedding_field: str | None = None,
) -> Project:
    """Change the project's featurizer, model or embedding field (managers); None leaves a setting as it is.

    After commit, a new featurizer or embedding field recomputes the features in the background
    (FEATURES_REFRESH) and a new model asks for a retrain (RETRAIN_REQUESTED). Values equal to the
    current ones change and send nothing. Bad values raise a DomainError naming each field.
    """
    role = getattr(project, "viewer_role", None) or annotation_selectors.membership_role(user, project)
    if role is None or annotation_selectors.ROLE_RANK[role] < annotation_selectors.ROLE_RANK["manager"]:
        raise PermissionDenied(MANAGERS_ONLY)
    # Checked before the row is locked: building a plugin may take a while.
    changes = _changes(Project.objects.get(pk=project.pk), featurizer, model_kind, embedding_field)
    with transaction.atomic():
        # Only what still differs once locked (two managers saving alike send once); only those columns are
        # written, so that a feature job's embedding dimension or error set meanwhile stays.
        current = Project.objects.select_for_update().get(pk=project.pk)
        changes = {name: value for name, value in changes.items() if _differs(current, name, value)}
        if "featurizer" in changes or "model_kind" in changes:
            _raise_any(_dense_checked(current, changes))  # against the other setting as it is now
        if changes:
            if "featurizer" in changes:
                changes["features_error"] = ""  # the old featurizer's failure; the new one has not run yet
            Project.objects.filter(pk=project.pk).update(**changes, updated_at=timezone.now())
            if "featurizer" in changes or "embedding_field" in changes:
                send_task_on_commit(TaskName.FEATURES_REFRESH, [project.pk, None])
            if "model_kind" in changes:
                note = f"Model changed to {_model_label(changes['model_kind'])}"
                send_task_on_commit(TaskName.RETRAIN_REQUESTED, [project.pk, user.pk, note])
    for name in (*SETTINGS, "features_error", "embedding_dim"):
        setattr(project, name, getattr(current, name))
    for name, value in changes.items():
        setattr(project, name, value)
    return project


def _differs(project: Project, name: str, value: str) -> bool:
    if name == "featurizer":
        return registry.key_of(project.kind, value) != featurizer_key(project)
    return getattr(project, name) != value


def _changes(
    current: Project, featurizer: str | None, model_kind: str | None, embedding_field: str | None
) -> dict[str, str]:
    """The settings that differ from the project's, checked; raises a DomainError naming every bad field."""
    errors: dict[str, list[str]] = {}
    changes: dict[str, str] = {}
    if featurizer is not None:
        key = _featurizer_checked(current, featurizer, errors)
        if key is not None and key != featurizer_key(current):
            # The kind's default is stored as "": it follows the default if a release changes it.
            changes["featurizer"] = "" if key == registry.DEFAULT[current.kind] else key
    if model_kind is not None:
        if model_kind not in training.MODELS:
            errors["model_kind"] = [f"Choose one of the models: {', '.join(training.MODELS)} (got “{model_kind[:40]}”)."]
        elif model_kind != current.model_kind:
            changes["model_kind"] = model_kind
    if embedding_field is not None:
        field = embedding_field.strip()
        if len(field) > EMBEDDING_FIELD_MAX_CHARS or not EMBEDDING_FIELD_PATTERN.fullmatch(field):
            errors["embedding_field"] = [
                f"Name the embedding field with 1 to {EMBEDDING_FIELD_MAX_CHARS} letters, digits or underscores, "
                "such as embedding or clip_vector."]
        elif field != current.embedding_field:
            changes["embedding_field"] = field
    if not {"featurizer", "model_kind"} & set(errors) and {"featurizer", "model_kind"} & set(changes):
        errors.update(_dense_checked(current, changes))
    _raise_any(errors)
    return changes


def _raise_any(errors: dict[str, list[str]]) -> None:
    if errors:
        raise DomainError(" ".join(m for messages in errors.values() for m in messages), details=errors)


def _featurizer_checked(project: Project, value: str, errors: dict[str, list[str]]) -> str | None:
    """The effective key chosen, or None (with the reason in ``errors``) if this project cannot use it.

    A plugin is built here, once: one that does not load is refused with its own message.
    """
    choices = dict(featurizer_choices(project))
    if value and value not in choices:
        shown = value if len(value) <= 40 else f"{value[:40]}…"
        errors["featurizer"] = [f"“{shown}” is not a featurizer of {project.kind} projects here; choose one of: "
                                f"{', '.join(choices)}."]
        return None
    key = registry.key_of(project.kind, value)
    if key != featurizer_key(project):
        try:
            _built(project, key)
        except ValueError as exc:  # a PluginError: it does not load, or serves other kinds
            errors["featurizer"] = [f"“{choices.get(key, key)}” cannot be used: {exc}."]
            return None
    return key


def _built(project: Project, key: str) -> Featurizer | None:
    """The plugin of this key, built (once per process); None for a built-in, which needs no check."""
    if key in registry.BUILT_INS:
        return None  # building one would import scikit-learn into a web process for nothing
    return registry.featurizer_for(project.kind, key, plugins=settings.LABELHUB_FEATURIZER_PLUGINS)


def _dense_checked(project: Project, changes: dict[str, str]) -> dict[str, list[str]]:
    """Refuse a model that needs dense features with a featurizer whose features are sparse: the errors, by field."""
    model = changes.get("model_kind", project.model_kind)
    if model not in training.DENSE_ONLY:
        return {}
    key = registry.key_of(project.kind, changes.get("featurizer", project.featurizer))
    label = _featurizer_label(key, dict(featurizer_choices(project)))
    try:
        plugin = _built(project, key)  # a plugin was built when it was chosen: this finds it built
    except ValueError as exc:
        return {"featurizer": [f"“{label}” cannot be used: {exc}."]}
    if not (key in SPARSE_BUILT_INS if plugin is None else plugin.sparse):
        return {}
    field = "model_kind" if "model_kind" in changes else "featurizer"
    return {field: [f"{_model_label(model)} needs dense features; “{label}” gives sparse ones. Choose another "
                    "model, or a featurizer with dense features."]}


def _featurizer_label(key: str, choices: dict[str, str]) -> str:
    return choices.get(key, f"{key} (not available here any more)")


def _model_label(key: str) -> str:
    return Project.Model(key).label if key in Project.Model.values else key
