"""Reads of feature work: the project's featurizer, the items still lacking features and the plans for them."""
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q, QuerySet

from annotations.models import ImportJob, Item, Project
from learner.ml import registry
from learner.ml.featurize import Featurizer

# Import jobs whose own feature tasks are still to come or under way.
FEATURES_PENDING = [ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]


def project_featurizer(project_id: int) -> Featurizer:
    """Return the featurizer the project has chosen (its kind's default unless it chose another).

    Raises FeaturizeError (or PluginError) when it cannot be built: embeddings before any was
    imported, a plugin that does not load.
    """
    kind, key, feature_names, dim = Project.objects.values_list(
        "kind", "featurizer", "feature_names", "embedding_dim"
    ).get(pk=project_id)
    return featurizer_of(kind, key, feature_names=feature_names, embedding_dim=dim)


def featurizer_of(kind: str, key: str, *, feature_names=(), embedding_dim: int | None = None) -> Featurizer:
    """Build a featurizer by key with the plugins this installation registers."""
    return registry.featurizer_for(
        kind, key, feature_names=feature_names, embedding_dim=embedding_dim,
        plugins=settings.LABELHUB_FEATURIZER_PLUGINS,
    )


def featurizer_of_space(project: Project, space: str) -> Featurizer:
    """The featurizer that computes ``space`` for this project (a model's lineage names its space).

    Raises FeaturizeError if no featurizer this project could use computes that space any more.
    """
    if space.startswith("plugin:"):  # plugin:<name>:<version>: only that plugin can compute it
        candidates = [space.split(":")[1]]
    else:  # a built-in (only they are tried: building a plugin may load a model)
        candidates = [key for key, (_, kinds) in registry.BUILT_INS.items() if project.kind in kinds]
    for key in candidates:
        try:
            featurizer = featurizer_of(
                project.kind, key, feature_names=project.feature_names, embedding_dim=project.embedding_dim
            )
        except (ValueError, ImportError):
            continue
        if featurizer.space == space:
            return featurizer
    raise registry.FeaturizeError(f"no featurizer of this installation computes the features {space!r}")


def items_lacking_features(project_id: int, space: str | None = None) -> QuerySet[Item]:
    """Items of the project that have no stored features yet, or (given ``space``) none of that space.

    Those that cannot get any (an image that no longer reads, no imported vector under the
    embedding featurizer) are among them: a chunk counts them as handled and stores nothing.
    """
    # An anti-join through the reverse one-to-one; NOT IN (subquery) would run row by row on
    # PostgreSQL once the subquery outgrows work_mem.
    missing = Q(features__isnull=True)
    if space is not None:
        missing |= Q(features__space__lt=space) | Q(features__space__gt=space)  # one outer join, unlike ~Q
    return Item.objects.filter(missing, project_id=project_id)


def features_plan(project_id: int, job_id: int | None) -> list[list[int]]:
    """Split the items lacking features into chunks of ids, in id order.

    With ``job_id``: the items of that import job. Without: all the project's items lacking
    features except those an import job is still computing, which are left to that job's chunks.
    """
    items = items_lacking_features(project_id, project_featurizer(project_id).space)
    if job_id is not None:
        items = items.filter(import_job_id=job_id)
    else:
        items = items.exclude(import_job__features_status__in=FEATURES_PENDING)
    ids = list(items.order_by("pk").values_list("pk", flat=True))
    size = settings.LABELHUB_FEATURE_CHUNK
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def import_jobs_features_counted(job_ids: Sequence[int]) -> list[int]:
    """Those of the import jobs whose feature count has reached their total."""
    counted = ImportJob.objects.filter(pk__in=job_ids, features_done__gte=F("features_total"))
    return list(counted.values_list("pk", flat=True))


def features_reconcile_targets(settled_before: datetime) -> list[tuple[int, int | None]]:
    """(project, import job or None) pairs whose features should exist by now but may not.

    Import jobs that finished before ``settled_before`` with their features not done, and
    projects with items outside any import created before it and still lacking features. The
    grace keeps work that is merely still queued from being planned twice.
    """
    jobs = ImportJob.objects.filter(
        status=ImportJob.Status.DONE, finished_at__lt=settled_before, features_status__in=FEATURES_PENDING
    ).values_list("project_id", "pk")
    loose = (
        Item.objects.filter(features__isnull=True, import_job__isnull=True, created_at__lt=settled_before)
        .order_by("project_id")  # not Item's default id order, which would defeat DISTINCT
        .values_list("project_id", flat=True)
        .distinct()
    )
    return sorted([*jobs, *((project_id, None) for project_id in loose)], key=lambda pair: (pair[0], pair[1] or 0))

