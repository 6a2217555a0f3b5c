"""Labeled data sets for bench/label_efficiency.py, all offline and deterministic, built through the real import.

- ``digits``: scikit-learn's 1,797 handwritten digits, imported as ``manage.py demo`` imports them.
- ``shapes``: generated 48 × 48 RGB photos of one object each, 8 classes = 4 shapes × 2 colour
  families, at a random place, size and rotation on a noisy, tinted, cluttered background: telling
  them apart takes both shape and colour, as with product photos, and no pixel position gives it away.
- ``docstrings``: the opening paragraphs of the docstrings of SciPy's public functions, classes and
  methods (SciPy is pinned in requirements.txt), labeled by the subpackage that defines them
  (stats, signal, linalg, …): prose people wrote about their subject, routed by topic as tickets
  are, and never generated from the labels.

Each builder writes the items to a file (a ZIP of PNGs, a CSV of texts) without their classes,
imports it with the import service as a user's upload would be, and computes the features in
this process as the feature tasks would; the classes are the oracle's held-back answers.
"""
from __future__ import annotations

import colorsys
import csv
import importlib
import inspect
import io
import math
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DIGITS = "digits"
SHAPES = "shapes"
DOCSTRINGS = "docstrings"

# --- shapes --------------------------------------------------------------------------------------

SHAPES_SIZE = 1500
SHAPES_SEED = 20
SHAPE_NAMES = ("circle", "square", "triangle", "star")
# Hue ranges in degrees (red wraps around 0); saturation and brightness vary within each family.
COLOUR_HUES = {"red": (-18.0, 18.0), "blue": (200.0, 240.0)}
SIDE = 48
SUPERSAMPLE = 4  # drawn at 4× and scaled down: smooth edges, as a camera would give


def shape_classes() -> list[str]:
    return [f"{colour}-{shape}" for colour in COLOUR_HUES for shape in SHAPE_NAMES]


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """The polygon of a shape of circumradius ``r`` turned by ``angle`` (radians) around (cx, cy)."""
    if shape == "circle":
        corners, radii = 48, [r]
    elif shape == "square":
        corners, radii = 4, [r]
    elif shape == "triangle":
        corners, radii = 3, [r]
    else:  # a five-pointed star: outer and inner corners by turns
        corners, radii = 10, [r, 0.45 * r]
    return [
        (cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / corners),
         cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / corners))
        for i in range(corners)
    ]


def _rgb(hue_degrees: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_degrees % 360.0) / 360.0, saturation, value)
    return round(255 * r), round(255 * g), round(255 * b)


def shape_png(rng: np.random.Generator, label: str) -> bytes:
    """One photo of the class's object: background, clutter, then the object; PNG bytes."""
    colour, shape = label.split("-")
    big = SIDE * SUPERSAMPLE
    # Background: a tinted grey of random brightness, a gentle gradient, and grain.
    base = rng.uniform(40, 215) + rng.uniform(-25, 25, size=3)
    ramp = np.linspace(-1.0, 1.0, SIDE)
    gradient = rng.uniform(-30, 30) * ramp[None, :] + rng.uniform(-30, 30) * ramp[:, None]
    background = base[None, None, :] + gradient[:, :, None] + rng.normal(0, 10, size=(SIDE, SIDE, 3))
    canvas = Image.fromarray(background.clip(0, 255).astype(np.uint8), "RGB").resize((big, big), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 4))):  # clutter: thin strokes in dull colours
        grey = rng.uniform(30, 225)
        stroke = tuple(int(np.clip(grey + rng.uniform(-20, 20), 0, 255)) for _ in range(3))
        points = [tuple(float(v) for v in rng.uniform(0, big, size=2)) for _ in range(2)]
        draw.line(points, fill=stroke, width=int(rng.integers(1, 3)) * SUPERSAMPLE)
    low, high = COLOUR_HUES[colour]
    fill = _rgb(rng.uniform(low, high), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    r = rng.uniform(8.0, 17.0)
    cx, cy = (rng.uniform(r + 1, SIDE - r - 1) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in _outline(shape, cx, cy, r, angle)]
    draw.polygon(points, fill=fill)
    image = canvas.resize((SIDE, SIDE), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def shapes_items(size: int = SHAPES_SIZE, seed: int = SHAPES_SEED) -> Iterator[tuple[str, bytes, str]]:
    """(name in the ZIP, PNG bytes, class) for ``size`` photos, the classes in turn; each drawn from its own seed."""
    classes = shape_classes()
    for index in range(size):
        label = classes[index % len(classes)]
        yield f"shapes/shape-{index:04d}.png", shape_png(np.random.default_rng([seed, index]), label), label


# --- docstrings ----------------------------------------------------------------------------------

DOC_PACKAGE = "scipy"
DOC_SUBPACKAGES = ("stats", "signal", "linalg", "optimize", "special", "interpolate", "sparse", "ndimage")
DOC_PER_CLASS = 120
DOC_MIN_WORDS = 6
DOC_MAX_CHARS = 1200
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]+\n\s*-{3,}\s*$", re.MULTILINE)  # numpydoc "Parameters\n----------"
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$", re.DOTALL)  # a compiled function's first line
_ROLE = re.compile(r":\w+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`~scipy.signal.lfilter` → scipy.signal.lfilter
_DOTTED = re.compile(r"\b" + DOC_PACKAGE + r"\.(?:\w+\.)*(\w+)")  # scipy.signal.lfilter → lfilter


def doc_text(doc: str) -> str:
    """A docstring's opening prose: before its first section, without signatures, directives or references."""
    doc = inspect.cleandoc(doc)
    section = _SECTION.search(doc)
    if section:
        doc = doc[:section.start()]
    kept = []
    for paragraph in re.split(r"\n\s*\n", doc):
        paragraph = paragraph.strip()
        if not paragraph or _SIGNATURE.match(paragraph) or paragraph.startswith((".. ", ">>>")):
            continue
        kept.append(paragraph)
    text = " ".join(kept)
    text = _DOTTED.sub(r"\1", _ROLE.sub(r"\1", text)).replace("`", "")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > DOC_MAX_CHARS:
        text = text[:DOC_MAX_CHARS].rsplit(" ", 1)[0]
    return text


def _public_objects(subpackage: str) -> Iterator[tuple[str, object]]:
    """(qualified name, object) of the subpackage's public functions and classes and their own public methods."""
    module = importlib.import_module(f"{DOC_PACKAGE}.{subpackage}")
    prefix = f"{DOC_PACKAGE}.{subpackage}"
    for name in sorted(getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]):
        obj = getattr(module, name, None)
        is_ufunc = isinstance(obj, np.ufunc)
        if not (inspect.isclass(obj) or inspect.isroutine(obj) or is_ufunc):
            continue
        if not is_ufunc and not (getattr(obj, "__module__", None) or "").startswith(prefix):
            continue  # a name re-exported from elsewhere (numpy, another subpackage)
        yield f"{subpackage}.{name}", obj
        if inspect.isclass(obj):
            for attribute, member in sorted(vars(obj).items()):
                if not attribute.startswith("_") and inspect.isroutine(member):
                    yield f"{subpackage}.{name}.{attribute}", member


def docstring_items(per_class: int = DOC_PER_CLASS) -> list[tuple[str, str, str]]:
    """(external_id, text, class) rows: each subpackage's distinct texts, at most ``per_class`` (a seeded draw).

    A text found under two subpackages (a shared template) names neither and is left out.
    """
    found: dict[str, dict[str, str]] = {}  # text → {subpackage: qualified name}
    for subpackage in DOC_SUBPACKAGES:
        for qualified, obj in _public_objects(subpackage):
            text = doc_text(getattr(obj, "__doc__", None) or "")
            if len(text.split()) >= DOC_MIN_WORDS:
                found.setdefault(text, {}).setdefault(subpackage, qualified)
    by_class: dict[str, list[tuple[str, str]]] = {name: [] for name in DOC_SUBPACKAGES}
    for text, owners in found.items():
        if len(owners) == 1:
            ((subpackage, qualified),) = owners.items()
            by_class[subpackage].append((qualified, text))
    rows = []
    for number, subpackage in enumerate(DOC_SUBPACKAGES):
        candidates = sorted(by_class[subpackage])
        if len(candidates) > per_class:
            chosen = np.random.default_rng([number, 7]).choice(len(candidates), size=per_class, replace=False)
            candidates = [candidates[i] for i in sorted(chosen)]
        rows += [(qualified, text, subpackage) for qualified, text in candidates]
    return rows


def docstrings_shuffled(per_class: int = DOC_PER_CLASS) -> list[tuple[str, str, str]]:
    """``docstring_items`` in a seeded order under opaque ids (doc-0000, …): neither order nor id tells the class."""
    rows = docstring_items(per_class)
    order = np.random.default_rng(DOC_PER_CLASS).permutation(len(rows))
    return [(f"doc-{number:04d}", rows[i][1], rows[i][2]) for number, i in enumerate(order)]


# --- building a project through the import -------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # Project.Kind
    title: str  # the project's name


DATASETS = {
    DIGITS: Dataset(DIGITS, "image", "Handwritten digits"),
    SHAPES: Dataset(SHAPES, "image", "Shapes and colours"),
    DOCSTRINGS: Dataset(DOCSTRINGS, "text", "SciPy docstrings by subpackage"),
}


def dataset_build(name: str, *, size: int | None = None) -> tuple[int, dict[str, str]]:
    """Create the data set's project and import its items (without their classes); return (project id, answers).

    ``size``: the first ``size`` items only (tests), else the whole set. Digits come from
    ``manage.py demo``, as the demo builds them; the answers map each item's external_id to its class.
    """
    if name == DIGITS:
        return _digits_build(size)
    if name == SHAPES:
        items = list(shapes_items(size or SHAPES_SIZE))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "shapes.zip"
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
                for entry, png, _ in items:
                    archive.writestr(entry, png)
            project_id = _import(DATASETS[SHAPES], shape_classes(), path)
        return project_id, {entry: label for entry, _, label in items}
    if name == DOCSTRINGS:
        rows = docstrings_shuffled()[:size]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "docstrings.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["external_id", "text"])
                writer.writerows((external_id, text) for external_id, text, _ in rows)
            project_id = _import(DATASETS[DOCSTRINGS], list(DOC_SUBPACKAGES), path)
        return project_id, {external_id: label for external_id, _, label in rows}
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def _digits_build(size: int | None) -> tuple[int, dict[str, str]]:
    from django.core.management import call_command
    from sklearn.datasets import load_digits

    from annotations.models import Project

    if size is not None:
        raise ValueError("digits come whole, as the demo imports them")
    call_command("demo", stdout=io.StringIO())
    answers = {f"digits/digit-{index:04d}.png": str(target) for index, target in enumerate(load_digits().target)}
    return Project.objects.get(slug=DIGITS).pk, answers


def _import(dataset: Dataset, labels: list[str], path: Path) -> int:
    """Create the project with its labels and import the file as its creator's upload would be; the project id."""
    from django.contrib.auth import get_user_model

    from annotations.imports.services import import_jobs_submit
    from annotations.services import project_create

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    project = project_create(
        user=user, name=dataset.title, slug=dataset.name, kind=dataset.kind,
        labels=[{"name": label} for label in labels],
    )
    with path.open("rb") as handle:
        (job,) = import_jobs_submit(project=project, user=user, uploads=[(path.name, handle)], wait=True)
    if job.rejected_count or job.created_count == 0:
        raise RuntimeError(f"the {dataset.name} import stored {job.created_count} items; rejected: {job.errors[:3]}")
    return project.pk


def features_compute(project_id: int, featurizer: str = "", model: str = "logistic") -> None:
    """Choose the project's featurizer (a key, "" for its kind's default) and model as its manager would,
    then compute the features its items lack in that featurizer's space here, as the feature tasks would."""
    from annotations.models import ImportJob, Membership, Project
    from learner.services.features import features_compute_chunk, features_plan_start
    from learner.services.model_settings import model_settings_update

    project = Project.objects.get(pk=project_id)
    manager = Membership.objects.filter(project=project, role=Membership.Role.MANAGER).order_by("pk").first().user
    model_settings_update(project=project, user=manager, featurizer=featurizer, model_kind=model)
    for job_id in ImportJob.objects.filter(project_id=project_id).order_by("pk").values_list("pk", flat=True):
        for chunk in features_plan_start(project_id, job_id):
            features_compute_chunk(project_id, chunk)
    error = Project.objects.values_list("features_error", flat=True).get(pk=project_id)
    if error:
        raise RuntimeError(f"features of {project.slug} failed: {error}")


def combinations(kind: str) -> list[tuple[str, str]]:
    """Every (featurizer, model) of the built-ins that fits the kind: imported embeddings left out, and
    models that need dense rows left out for sparse features."""
    from learner.ml.registry import EMBEDDINGS, choices, featurizer_for
    from learner.ml.training import DENSE_ONLY, MODELS

    out = []
    for key, _label in choices(kind, {}):
        if key == EMBEDDINGS:
            continue
        sparse_rows = featurizer_for(kind, key).sparse
        out += [(key, model) for model in MODELS if not (sparse_rows and model in DENSE_ONLY)]
    return out


def oracle_write(path: Path, answers: dict[str, str]) -> None:
    """The held-back answers as the CSV simulate reads: external_id,label."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "label"])
        writer.writerows(sorted(answers.items()))
