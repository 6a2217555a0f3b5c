"""Imported embeddings: with the items (JSONL, CSV, a ZIP's side file) and later by external_id (REST, command)."""
import io
import json
import threading

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.imports import embeddings, writers
from annotations.models import ImportJob, Item, ItemEmbedding, Membership, Project
from tests.annotations.imports.test_services import png, run, zip_of
from tests.factories import ItemFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

REFRESH = "learner.features_refresh"


def jsonl(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def vectors(project: Project) -> dict[str, list[float]]:
    """The project's stored vectors by external_id, as the learner reads them (float32 bytes)."""
    rows = ItemEmbedding.objects.filter(project=project).values_list("item__external_id", "vector")
    return {external_id: np.frombuffer(bytes(vector), np.float32).tolist() for external_id, vector in rows}


def dim(project: Project) -> int | None:
    project.refresh_from_db(fields=["embedding_dim"])
    return project.embedding_dim


# With the items


def test_jsonl_vectors_are_stored_the_first_fixes_the_dimension_and_a_wrong_one_is_rejected(text_project, manager):
    content = jsonl(
        {"external_id": "r1", "text": "one", "embedding": [0.5, 1, -2]},
        {"external_id": "r2", "text": "two"},
        {"external_id": "r3", "text": "three", "embedding": [1, 2]},
        {"external_id": "r4", "text": "four", "embedding": [3, 4, 5]},
    )
    job = run(text_project, manager, "rows.jsonl", content)

    assert (job.status, job.created_count, job.rejected_count) == (ImportJob.Status.DONE, 3, 1)
    assert job.errors == [{"row": 3, "where": "line 3", "reason": "the embedding has 2 numbers; this project's have 3"}]
    assert vectors(text_project) == {"r1": [0.5, 1.0, -2.0], "r4": [3.0, 4.0, 5.0]}
    assert sorted(Item.objects.values_list("external_id", flat=True)) == ["r1", "r2", "r4"]
    assert dim(text_project) == 3


def test_a_json_array_file_carries_vectors_in_the_same_field(tabular_project, manager):
    content = json.dumps([
        {"external_id": "a", "f1": 1, "embedding": [1, 2.5]}, {"external_id": "b", "f1": 2, "embedding": None},
    ]).encode()
    job = run(tabular_project, manager, "rows.json", content)

    tabular_project.refresh_from_db()
    assert (job.created_count, job.errors, tabular_project.feature_names) == (2, [], ["f1"])
    assert vectors(tabular_project) == {"a": [1.0, 2.5]}


def test_a_project_whose_dimension_is_fixed_rejects_other_vectors(text_project, manager):
    Project.objects.filter(pk=text_project.pk).update(embedding_dim=4, embedding_field="vec")
    content = jsonl({"external_id": "r1", "text": "one", "vec": [1, 2, 3]}, {"text": "two", "vec": [1, 2, 3, 4]})
    job = run(text_project, manager, "rows.jsonl", content)

    assert job.errors == [{"row": 1, "where": "line 1", "reason": "the embedding has 3 numbers; this project's have 4"}]
    assert list(vectors(text_project).values()) == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize(
    ("embedding", "reason"),
    [
        ("[1, NaN]", "the embedding's value at index 1 is NaN, not a finite number"),
        ("[Infinity, 1]", "the embedding's value at index 0 is infinite, not a finite number"),
        ("[-1e39, 1]", "the embedding's value at index 0 is -1e+39, beyond the range of float32 (±3.4e38)"),
        ("[1, " + "9" * 309 + "]", "the embedding's value at index 1 is beyond the range of float32 (±3.4e38)"),
        ('[1, "2"]', "the embedding's value at index 1 is '2', not a number"),
        ("[true, 1]", "the embedding's value at index 0 is True, not a number"),
        ("[1, [2]]", "the embedding's value at index 1 is [2], not a number"),
        ('{"x": 1}', "the embedding must be a list of numbers, not an object"),
        ("5", "the embedding must be a list of numbers, not a number"),
        ('"1, 2"', "the embedding is not a JSON list of numbers"),
        ("[]", "the embedding is empty"),
        (json.dumps([0.0] * 8193), "the embedding has 8,193 numbers, above the limit of 8,192"),
    ],
)
def test_a_bad_vector_rejects_its_row_and_the_others_are_stored(text_project, manager, embedding, reason):
    good = {"external_id": "good", "text": "fine", "embedding": [1.5, 2.5]}
    content = jsonl(good, f'{{"external_id": "bad", "text": "bad", "embedding": {embedding}}}')
    job = run(text_project, manager, "rows.jsonl", content)

    assert job.errors == [{"row": 2, "where": "line 2", "reason": reason}]
    assert vectors(text_project) == {"good": [1.5, 2.5]}


def test_csv_one_column_holds_a_json_list(text_project, manager):
    content = b'external_id,text,embedding,meta_source\nr1,hello,"[1, 2.5]",web\nr2,world,,\nr3,bad,"[1, nan]",\n'
    job = run(text_project, manager, "rows.csv", content)

    assert job.created_count == 2
    assert job.errors == [{"row": 3, "where": "line 4", "reason": "the embedding is not a JSON list of numbers"}]
    assert vectors(text_project) == {"r1": [1.0, 2.5]}
    assert Item.objects.get(external_id="r1").metadata == {"source": "web"}


def test_csv_numbered_columns_hold_a_vector_and_are_neither_features_nor_metadata(tabular_project, manager):
    Project.objects.filter(pk=tabular_project.pk).update(embedding_field="meta_emb")
    tabular_project.refresh_from_db()
    content = (
        b"external_id,f1,meta_emb_0,f2,meta_emb_1,meta_note,label\n"
        b"a,1,0.25,2,-1,x,class_0\n"
        b"b,3,,4,,,\n"
        b"c,5,1,6,,,\n"
        b"d,7,inf,8,1,,\n"
    )
    job = run(tabular_project, manager, "rows.csv", content)

    tabular_project.refresh_from_db()
    assert tabular_project.feature_names == ["f1", "f2"]
    assert job.errors == [
        {"row": 3, "where": "line 4", "reason": "the embedding's column 'meta_emb_1' is empty"},
        {"row": 4, "where": "line 5", "reason": "the embedding's value at index 0 is infinite, not a finite number"},
    ]
    items = {item.external_id: item for item in Item.objects.all()}
    assert (items["a"].values, items["a"].metadata) == ([1.0, 2.0], {"note": "x"})
    assert vectors(tabular_project) == {"a": [0.25, -1.0]}  # b has none
    assert dim(tabular_project) == 2


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("external_id,text,embedding_0,embedding_2",
         "The embedding columns embedding_0, embedding_1, … must follow on without a gap; embedding_1 is missing."),
        ("external_id,text,embedding,embedding_0",
         "The header holds the embedding both in 'embedding' and in embedding_0, embedding_1, …; keep one of them."),
    ],
)
def test_embedding_columns_that_cannot_be_read_fail_the_file(text_project, manager, settings, header, message):
    job = run(text_project, manager, "rows.csv", f"{header}\nr1,hello,1,2\n".encode())

    assert (job.status, job.message) == (ImportJob.Status.FAILED, message)
    assert Item.objects.count() == 0


def test_reimporting_items_with_new_vectors_replaces_them_and_refreshes_their_features(
    text_project, manager, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = run(text_project, manager, "rows.jsonl", jsonl(
            {"external_id": "r1", "text": "one", "embedding": [1, 2]},
            {"external_id": "r2", "text": "two", "embedding": [3, 4]},
            {"external_id": "r3", "text": "three"},
        ))
    sent_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = run(text_project, manager, "rows.jsonl", jsonl(
            {"external_id": "r1", "text": "one", "embedding": [1, 2]},
            {"external_id": "r2", "text": "two", "embedding": [5, 6]},
            {"external_id": "r3", "text": "three", "embedding": [7, 8]},
        ))

    assert (first.created_count, again.created_count, again.unchanged_count) == (3, 0, 3)
    assert vectors(text_project) == {"r1": [1.0, 2.0], "r2": [5.0, 6.0], "r3": [7.0, 8.0]}
    ids = dict(Item.objects.values_list("external_id", "pk"))
    assert sent_tasks == [(REFRESH, [text_project.pk, [ids["r2"], ids["r3"]]])]


def test_a_zip_side_file_gives_its_images_vectors_by_path(image_project, manager):
    side = jsonl(
        {"external_id": "a.png", "embedding": [1, 2]},
        {"external_id": "dir/b.png", "embedding": [1, "x"]},
        {"external_id": "not-in-the-zip.png", "embedding": [9, 9, 9]},
    )
    archive = zip_of({
        "a.png": png(color="red"), "dir/b.png": png(color="blue"), "c.png": png(color="green"),
        "embeddings.jsonl": side, "labels.csv": b"external_id,label\na.png,3\n",
    })
    job = run(image_project, manager, "digits.zip", archive)

    assert (job.created_count, job.labels_count) == (2, 1)
    assert job.errors == [{
        "row": 2, "where": "dir/b.png",
        "reason": "embeddings.jsonl line 2: the embedding's value at index 1 is 'x', not a number",
    }]
    assert vectors(image_project) == {"a.png": [1.0, 2.0]}  # c.png has none
    assert dim(image_project) == 2


def test_a_zip_side_file_may_be_csv(image_project, manager):
    side = b"external_id,embedding_0,embedding_1\na.png,1,2\na.png,3,4\nb.png,5,6\n"
    job = run(image_project, manager, "digits.zip", zip_of({
        "a.png": png(color="red"), "b.png": png(color="blue"), "embeddings.csv": side,
    }))

    assert job.errors == [{
        "row": 1, "where": "a.png",
        "reason": "embeddings.csv line 2: its embedding is given twice, also at embeddings.csv line 3",
    }]
    assert vectors(image_project) == {"b.png": [5.0, 6.0]}


def test_a_zip_with_two_side_files_of_embeddings_stores_nothing(image_project, manager, settings):
    job = run(image_project, manager, "digits.zip", zip_of({
        "a.png": png(), "embeddings.csv": b"external_id,embedding\n", "embeddings.jsonl": b"",
    }))

    assert (job.status, job.message) == (
        ImportJob.Status.FAILED, "The ZIP holds both embeddings.jsonl and embeddings.csv; keep one of them."
    )
    assert Item.objects.count() == 0


def test_vectors_of_a_dimension_another_door_fixed_meanwhile_are_rejected(text_project, manager, monkeypatch):
    ItemFactory(project=text_project, external_id="old")
    sort = writers._Publisher.sort

    def sort_then_another_door_stores(self, rows, *, resumed):
        chunk = sort(self, rows, resumed=resumed)
        embeddings.embeddings_import_rows(project=text_project, records=[{"external_id": "old", "embedding": [1] * 4}])
        return chunk

    monkeypatch.setattr(writers._Publisher, "sort", sort_then_another_door_stores)
    job = run(text_project, manager, "rows.jsonl", jsonl(
        {"external_id": "r1", "text": "one", "embedding": [1, 2]}, {"external_id": "r2", "text": "two"},
    ))

    assert (job.created_count, job.rejected_count) == (1, 1)
    assert job.errors == [{"row": 1, "where": "line 1", "reason": "the embedding has 2 numbers; this project's have 4"}]
    assert vectors(text_project) == {"old": [1.0] * 4} and dim(text_project) == 4


# Later, by external_id: REST


def post(client: APIClient, project: Project, body: dict | None = None, file: SimpleUploadedFile | None = None):
    url = reverse("api-embeddings-import", args=[project.pk])
    if file is not None:
        return client.post(url, {"file": file}, format="multipart")
    return client.post(url, body, format="json")


@pytest.fixture
def items(text_project) -> dict[str, Item]:
    return {name: ItemFactory(project=text_project, external_id=name) for name in ("a", "b", "c")}


def test_a_manager_stores_vectors_good_rows_stored_bad_rows_listed(
    text_project, manager, items, sent_tasks, django_capture_on_commit_callbacks
):
    ItemFactory(project=ProjectFactory(), external_id="elsewhere")
    client = APIClient()
    client.force_authenticate(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, text_project, {"embeddings": [
            {"external_id": "a", "embedding": [1, 2, 3]},
            {"external_id": "elsewhere", "embedding": [1, 2, 3]},
            {"external_id": "b", "embedding": [1, 2]},
            {"external_id": "c"},
            {"external_id": "a", "embedding": [4, 5, 6]},
        ]})

    assert response.status_code == 200
    assert response.json() == {"updated": 1, "unchanged": 0, "rejected": 4, "errors": [
        {"row": 2, "where": "", "reason": "no item of this project has external_id 'elsewhere'"},
        {"row": 3, "where": "", "reason": "the embedding has 2 numbers; this project's have 3"},
        {"row": 4, "where": "", "reason": "the row has no embedding ('embedding')"},
        {"row": 5, "where": "", "reason": "duplicate external_id, first at row 1"},
    ]}
    assert vectors(text_project) == {"a": [1.0, 2.0, 3.0]}
    assert sent_tasks == [(REFRESH, [text_project.pk, [items["a"].pk]])]


def test_a_file_of_vectors_is_stored_and_the_same_vectors_again_change_nothing(
    text_project, manager, items, sent_tasks, django_capture_on_commit_callbacks
):
    client = APIClient()
    client.force_authenticate(manager)
    content = b"external_id,embedding_0,embedding_1\na,1,2\nb,3,4\n"
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, text_project, file=SimpleUploadedFile("vectors.csv", content))
        again = post(client, text_project, file=SimpleUploadedFile("vectors.csv", content))

    assert (first.status_code, first.json()) == (200, {"updated": 2, "unchanged": 0, "rejected": 0, "errors": []})
    assert (again.status_code, again.json()) == (200, {"updated": 0, "unchanged": 2, "rejected": 0, "errors": []})
    assert vectors(text_project) == {"a": [1.0, 2.0], "b": [3.0, 4.0]}
    assert sent_tasks == [(REFRESH, [text_project.pk, [items["a"].pk, items["b"].pk]])]


def test_a_request_whose_every_row_is_bad_stores_nothing(text_project, manager, items, sent_tasks):
    client = APIClient()
    client.force_authenticate(manager)
    response = post(client, text_project, {"embeddings": [
        {"external_id": "nobody", "embedding": [1, 2]}, {"external_id": "a", "embedding": [1, float("1e39")]},
    ]})

    assert response.status_code == 400
    assert response.json()["detail"] == "Every row was rejected (2); nothing was stored."
    assert [error["row"] for error in response.json()["errors"]] == [1, 2]
    assert ItemEmbedding.objects.count() == 0 and dim(text_project) is None and sent_tasks == []


def test_a_file_that_cannot_be_read_stores_nothing_not_even_its_good_rows(text_project, manager, items):
    client = APIClient()
    client.force_authenticate(manager)
    content = jsonl({"external_id": "a", "embedding": [1, 2]}, "{not json")
    response = post(client, text_project, file=SimpleUploadedFile("vectors.jsonl", content))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("vectors.jsonl line 2: invalid JSON")
    assert ItemEmbedding.objects.count() == 0


def test_a_request_is_bounded(text_project, manager, items):
    client = APIClient()
    client.force_authenticate(manager)
    many = post(client, text_project, {"embeddings": [{"external_id": "a", "embedding": [1]}] * 10_001})
    other = post(client, text_project, file=SimpleUploadedFile("vectors.json", b"[]"))

    assert many.status_code == 400 and "embeddings" in many.json()["errors"]
    assert (other.status_code, other.json()["detail"]) == (
        400, "vectors.json: embeddings are imported from JSONL (.jsonl) or CSV (.csv) files."
    )
    assert ItemEmbedding.objects.count() == 0


def test_only_the_projects_managers_store_vectors(text_project, annotator, items):
    body = {"embeddings": [{"external_id": "a", "embedding": [1, 2]}]}
    client = APIClient()
    assert post(client, text_project, body).status_code == 401

    client.force_authenticate(annotator)
    assert post(client, text_project, body).status_code == 404  # as for the import API: nothing to see here

    outsider = UserFactory(username="outsider")
    MembershipFactory(project=ProjectFactory(), user=outsider, role=Membership.Role.MANAGER)
    client.force_authenticate(outsider)
    assert post(client, text_project, body).status_code == 404
    assert ItemEmbedding.objects.count() == 0


@pytest.mark.postgres  # the project row's lock (SQLite's one write lock serializes writers anyway)
@pytest.mark.django_db(transaction=True)
def test_two_doors_storing_a_projects_first_vectors_at_once_fix_one_dimension(text_project, items, monkeypatch):
    replace, inside = embeddings.embeddings_replace, threading.Event()

    def slow_replace(project_id, vectors):
        inside.set()  # the first door holds the project's row lock from here until it commits
        threading.Event().wait(0.5)
        return replace(project_id, vectors)

    monkeypatch.setattr(embeddings, "embeddings_replace", slow_replace)

    def first_door():
        try:
            embeddings.embeddings_import_rows(project=text_project, records=[{"external_id": "a", "embedding": [1, 2]}])
        finally:
            connection.close()

    door = threading.Thread(target=first_door)
    door.start()
    inside.wait(5)
    monkeypatch.setattr(embeddings, "embeddings_replace", replace)
    second = embeddings.embeddings_import_rows(project=text_project, records=[
        {"external_id": "b", "embedding": [1, 2, 3]},
    ])
    door.join()

    assert second.errors == [{"row": 1, "where": "", "reason": "the embedding has 3 numbers; this project's have 2"}]
    assert vectors(text_project) == {"a": [1.0, 2.0]} and dim(text_project) == 2


# Later, by external_id: the command


def command(*args: str) -> tuple[str, str, CommandError | None]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_embeddings", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


def test_command_stores_good_rows_and_lists_bad_ones_with_a_failing_exit(text_project, items, tmp_path):
    path = tmp_path / "vectors.jsonl"
    path.write_bytes(jsonl(
        {"external_id": "a", "embedding": [1, 2]}, {"external_id": "zz", "embedding": [1, 2]},
        {"external_id": "b", "embedding": [1, 2, 3]},
    ))
    out, err, failed = command("sentiment", str(path))

    assert out == "vectors.jsonl: 1 updated, 0 unchanged, 2 rejected\n"
    assert err == (
        "vectors.jsonl: row 2 (line 2): no item of this project has external_id 'zz'\n"
        "vectors.jsonl: row 3 (line 3): the embedding has 3 numbers; this project's have 2\n"
    )
    assert failed is not None and failed.returncode == 1
    assert vectors(text_project) == {"a": [1.0, 2.0]}


def test_command_with_only_good_rows_succeeds(text_project, items, tmp_path):
    path = tmp_path / "vectors.csv"
    path.write_bytes(b'external_id,embedding\na,"[1, 2]"\nb,"[3, 4]"\n')

    assert command("sentiment", str(path)) == ("vectors.csv: 2 updated, 0 unchanged, 0 rejected\n", "", None)
    assert vectors(text_project) == {"a": [1.0, 2.0], "b": [3.0, 4.0]}


def test_command_refuses_a_file_it_cannot_read(text_project, items, tmp_path):
    path = tmp_path / "vectors.csv"
    path.write_bytes(b"id,embedding\na,[1]\n")
    _, _, failed = command("sentiment", str(path))

    assert str(failed) == (
        "vectors.csv needs the columns external_id and embedding (a JSON list), or external_id and embedding_0, "
        "embedding_1, … (a number each). Nothing was stored."
    )
    assert ItemEmbedding.objects.count() == 0
