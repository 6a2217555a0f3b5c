"""What a simulation is told: the oracle's held-back answers and the settings its scratch copies may change."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db.models.fields.json import KeyTextTransform

from annotations.models import Item, Project
from labelhub.api import DomainError

# The settings that shape a simulation, which ``overrides`` may change for the scratch copies.
ADJUSTABLE = (
    "audit_share", "overlap", "retrain_every_n_labels", "promotion_rule", "gate_margin", "gate_alpha", "gate_min_gain", "gate_min_audit",
    "gate_min_audit_first", "gate_max_recall_drop",
)


class SimulationError(DomainError):
    """A simulation cannot run as asked; the message says why."""


def settings_overrides(pairs: list[str]) -> dict:
    """Parse NAME=VALUE pairs into validated project settings for the scratch copies."""
    overrides = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or name not in ADJUSTABLE:
            raise SimulationError(f"Cannot set {pair!r}: use NAME=VALUE with NAME one of {', '.join(ADJUSTABLE)}.")
        model_field = Project._meta.get_field(name)
        try:
            value = model_field.to_python(raw.strip())
            model_field.run_validators(value)
        except ValidationError as exc:
            raise SimulationError(f"Cannot set {name} to {raw!r}: {' '.join(exc.messages)}") from None
        overrides[name] = value
    return overrides


@dataclass(frozen=True)
class Oracle:
    """The held-back answers: label name by item external_id, and where they came from."""

    answers: dict[str, str]
    source: str


def oracle_from_metadata(project: Project, field_name: str) -> Oracle:
    """Read each item's answer from ``Item.metadata[field_name]``; items without one are left out."""
    rows = (
        Item.objects.filter(project=project)
        .annotate(answer=KeyTextTransform(field_name, "metadata"))
        .filter(answer__isnull=False)
        .values_list("external_id", "answer")
    )
    answers = {external_id: str(answer).strip() for external_id, answer in rows.iterator(chunk_size=10_000)}
    answers = {key: value for key, value in answers.items() if value}
    if not answers:
        raise SimulationError(f"No item of project '{project.slug}' has an answer in metadata['{field_name}'].")
    return Oracle(answers, f"metadata['{field_name}']")


def oracle_from_csv(path: Path | str) -> Oracle:
    """Read answers from a CSV of external_id,label rows (a header row naming those columns is optional)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SimulationError(f"Cannot read the oracle file {path}: {exc}") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["external_id", "label"]:
        rows = rows[1:]
    answers: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise SimulationError(f"{path}: row {number} is not 'external_id,label': {row!r}")
        answers[row[0].strip()] = row[1].strip()
    if not answers:
        raise SimulationError(f"The oracle file {path} holds no answers.")
    return Oracle(answers, str(path))
