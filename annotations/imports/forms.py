"""The import page's form: one or more files to upload."""
from django import forms
from django.core.files.uploadedfile import UploadedFile


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes one or more files and cleans to a list."""

    widget = MultipleFileInput

    def clean(self, data: UploadedFile | list[UploadedFile] | None, initial: None = None) -> list[UploadedFile]:
        clean_one = super().clean
        files = data if isinstance(data, list | tuple) else [data]
        # An empty selection goes through the single-file check, which reports "required".
        return [clean_one(f, initial) for f in files] if files else [clean_one(None, initial)]


class ImportForm(forms.Form):
    files = MultipleFileField(
        label="Files",
        help_text="One or more files, each imported on its own: its good rows are stored and its bad rows listed "
                  "with their reasons; a file that cannot be read as a whole (bad encoding, broken quoting, "
                  "missing columns, not a ZIP) stores nothing.",
    )
