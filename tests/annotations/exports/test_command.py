"""The export_labels command: writes the same export as the API, and fails in one line."""
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db


def test_command_writes_the_export_and_fails_in_one_line(labeled, tmp_path):
    out = tmp_path / "labels.jsonl"
    call_command("export_labels", "--project", labeled.slug, "--format", "jsonl", "--mode", "all",
                 "--output", str(out))
    assert len(out.read_text().splitlines()) == 6

    with pytest.raises(CommandError, match="No project"):
        call_command("export_labels", "--project", "nope", "--format", "csv")
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("export_labels", "--project", labeled.slug, "--format", "csv", "--since", "soon")
    for since in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):  # out of range in UTC: a traceback
        with pytest.raises(CommandError, match="out of range"):
            call_command("export_labels", "--project", labeled.slug, "--format", "csv", "--since", since)
