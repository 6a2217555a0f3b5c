"""Scratch copies of a project for one simulated run: its answered items as a matrix, the copy, its experts."""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import storages
from django.db import connection, transaction

from annotations.models import Item, Label, Membership, Project
from learner.ml.featurize import Matrix
from learner.models import FeatureVector
from learner.ml.registry import uses_tfidf
from learner.selectors import pool_matrix, project_featurizer
from learner.services.scoring import score_chunk, score_pool_plan

from .oracles import Oracle, SimulationError

# Settings a scratch copy must not take over: identity, timestamps, and the schedule, which a
# simulation without wall-clock time cannot honour (and which would retrain a kept copy on beat).
NOT_COPIED = {"id", "name", "slug", "created_at", "updated_at", "query_strategy", "retrain_interval_minutes"}
ITEM_COPY_BATCH = 2000


@dataclass
class SimulationData:
    """The source project's items that have features and an answer: one matrix row each."""

    kind: str
    item_ids: np.ndarray
    external_ids: list[str]
    X: Matrix
    y: np.ndarray  # index into label_names
    label_names: list[str]
    left_out: dict[str, int]
    model: str = "logistic"  # the project's model choice and whether its features are TF-IDF weighted
    tfidf: bool = False


def data_load(project: Project, oracle: Oracle) -> SimulationData:
    label_names = list(project.labels.order_by("order", "name").values_list("name", flat=True))
    index = {name: i for i, name in enumerate(label_names)}
    unknown: dict[str, int] = {}
    for answer in oracle.answers.values():
        if answer not in index:
            unknown[answer] = unknown.get(answer, 0) + 1
    if unknown:
        shown = ", ".join(f"'{name}' ({count} items)" for name, count in sorted(unknown.items())[:5])
        raise SimulationError(
            f"The oracle ({oracle.source}) answers with names that are not labels of project '{project.slug}': "
            f"{shown}{' …' if len(unknown) > 5 else ''}. Its labels are: {', '.join(label_names) or 'none'}."
        )
    rows = Item.objects.filter(project=project).values_list("pk", "external_id")
    external_of = {pk: external_id for pk, external_id in rows.iterator(chunk_size=10_000)}
    answered = sorted(pk for pk, external_id in external_of.items() if external_id in oracle.answers)
    if not answered:
        raise SimulationError(f"No item of project '{project.slug}' has an answer in {oracle.source}.")
    ids, X = pool_matrix(project.pk, item_ids=answered)
    if len(ids) == 0:
        raise SimulationError(f"No answered item of project '{project.slug}' has features yet; compute them first.")
    external_ids = [external_of[int(pk)] for pk in ids]
    y = np.array([index[oracle.answers[external_id]] for external_id in external_ids], dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise SimulationError("The oracle's answers name a single label; a simulation needs at least two.")
    left_out = {"without_answer": len(external_of) - len(answered), "without_features": len(answered) - len(ids)}
    tfidf = uses_tfidf(project_featurizer(project.pk))
    return SimulationData(project.kind, ids, external_ids, X, y, label_names, left_out, project.model_kind, tfidf)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the module-level random numbers (the queue's audit draws) for one run; restore them after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def scratch_annotators(token: str, count: int) -> list[AbstractBaseUser]:
    """Create the simulated experts: inactive users without a usable password, so nobody can log in as them."""
    User = get_user_model()
    users = []
    for number in range(1, count + 1):
        user = User(username=f"sim-{token}-{number}", is_active=False)
        user.set_unusable_password()
        user.save()
        users.append(user)
    return users


def scratch_project(
    source: Project, data: SimulationData, rows: np.ndarray, *, strategy: str, seed: int, token: str,
    annotators: list[AbstractBaseUser], overrides: dict,
) -> Project:
    """Copy the project's labels, settings, the given items and their features into a new scratch project."""
    copied = {f.attname: getattr(source, f.attname) for f in Project._meta.concrete_fields if f.name not in NOT_COPIED}
    copied.update(overrides)
    with transaction.atomic():
        scratch = Project.objects.create(
            **copied, name=f"{source.name} · simulation {strategy} seed {seed}"[:200],
            slug=f"sim-{token}-{strategy}-{seed}"[:100], query_strategy=strategy, retrain_interval_minutes=None,
        )
        Label.objects.bulk_create([
            Label(project=scratch, name=label.name, shortcut=label.shortcut, color=label.color, order=label.order)
            for label in source.labels.all()
        ])
        Membership.objects.bulk_create(
            [Membership(project=scratch, user=user, role=Membership.Role.ANNOTATOR) for user in annotators]
        )
        wanted = set(data.item_ids[rows].tolist())
        # A fresh seeded random key per copy, so that audit draws and random order differ by seed.
        keys = iter(np.random.default_rng([seed, 7]).random(len(wanted)).tolist())
        columns = ("pk", "external_id", "text", "image", "thumbnail", "values", "metadata", "content_hash")
        batch: list[Item] = []
        rows_of_source = Item.objects.filter(project=source).order_by("pk").values_list(*columns)
        for pk, external_id, text, image, thumbnail, values, metadata, content_hash in rows_of_source.iterator(
            chunk_size=ITEM_COPY_BATCH
        ):
            if pk not in wanted:
                continue
            # Image items keep the stored file names: the copy reads the same files and never deletes them.
            batch.append(Item(
                project=scratch, external_id=external_id, text=text, image=image, thumbnail=thumbnail, values=values,
                metadata=metadata, content_hash=content_hash, random_key=next(keys),
            ))
            if len(batch) >= ITEM_COPY_BATCH:
                Item.objects.bulk_create(batch)
                batch = []
        Item.objects.bulk_create(batch)
        features_copy(source.pk, scratch.pk)
    return scratch


def features_copy(source_id: int, scratch_id: int) -> int:
    """Copy the feature rows of the source's items to the scratch items of the same external_id, in one statement."""
    space = project_featurizer(source_id).space
    feature, item = FeatureVector._meta, Item._meta
    column = {name: f'"{feature.get_field(name).column}"' for name in ("item", "project", "space", "values", "indices")}
    item_project, item_external = (f'"{item.get_field(name).column}"' for name in ("project", "external_id"))
    sql = (
        f'INSERT INTO "{feature.db_table}" ({column["item"]}, {column["project"]}, {column["space"]},'
        f' {column["values"]}, {column["indices"]})'
        f' SELECT dst."id", %s, f.{column["space"]}, f.{column["values"]}, f.{column["indices"]}'
        f' FROM "{feature.db_table}" f'
        f' INNER JOIN "{item.db_table}" src ON src."id" = f.{column["item"]}'
        f' INNER JOIN "{item.db_table}" dst ON dst.{item_project} = %s AND dst.{item_external} = src.{item_external}'
        f' WHERE f.{column["project"]} = %s AND f.{column["space"]} = %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [scratch_id, scratch_id, source_id, space])
        return cursor.rowcount


def artifacts_delete(names: list[str]) -> None:
    """Delete model files of a rolled-back run: the storage is outside the transaction."""
    storage = storages["models"]
    for name in names:
        storage.delete(name)


def pool_score_now(project_id: int) -> None:
    """Score the pool in this process, as the scoring tasks would, so the queue serves the new ranking at once."""
    plan = score_pool_plan(project_id)
    if plan is not None:
        for id_range in plan.ranges:
            score_chunk(project_id, plan.scoring_id, id_range)
