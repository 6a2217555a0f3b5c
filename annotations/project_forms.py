"""Forms of the new-project and settings pages: a project's fields, bounded by the model's validators, and its labels."""
from typing import Any

from django import forms

from .models import Label, Project
from .models.projects import LABEL_ORDER_MAX
from .services import LABEL_PALETTE
from .services.labels import LABELS_MAX

COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"
COLOR_ERROR = "Use a hex colour such as #4e79a7."
LABELS_MIN = 2  # a model learns to tell apart at least two classes
LABEL_ROWS = 3  # empty label rows the new-project page starts with

# The settings page's sections, in order; every setting a manager may change over the API is in one.
SETTINGS_SECTIONS: list[tuple[str, str, list[str]]] = [
    ("general", "General", ["name", "instructions"]),
    ("queue", "Queue", ["query_strategy", "audit_share", "overlap", "lease_ttl_seconds", "show_suggestions"]),
    ("retraining", "Retraining", ["retrain_every_n_labels", "retrain_interval_minutes", "degradation_window",
                                  "degradation_floor", "degradation_margin"]),
    ("promotion", "Promotion of a retrained model", ["promotion_rule", "gate_margin", "gate_alpha", "gate_min_gain",
                                                     "gate_min_audit", "gate_min_audit_first", "gate_max_recall_drop"]),
    ("drift", "Data drift", ["drift_enabled", "drift_threshold"]),
    ("labeling", "Labeling page", ["shown_metadata_fields"]),
]
HELP = {  # settings whose model field has no help text
    "name": "Shown in the project list and on every page of the project.",
    "instructions": "Guidelines shown to experts beside every item while they label, in Markdown (links, lists, "
                    "emphasis, tables; no images or raw HTML).",
    "query_strategy": "Which unlabeled item the queue serves next: the one the live model is least sure of, by this "
                      "measure (random ignores the model).",
    "drift_enabled": "Retrain when newly imported items differ from those the live model was trained on.",
    "gate_alpha": "Significance level of the paired test between the retrained and the live model.",
    "gate_min_gain": "Under 'better': the least accuracy gain on the audit labels that counts as better.",
}


LABELS = {  # clearer names than the fields' own
    "lease_ttl_seconds": "Lease time (seconds)",
    "retrain_every_n_labels": "Retrain every N new labels",
    "retrain_interval_minutes": "Retrain every (minutes)",
    "degradation_window": "Degradation window (audit labels)",
    "degradation_floor": "Degradation floor (accuracy)",
    "degradation_margin": "Degradation margin (accuracy)",
    "drift_enabled": "Retrain on data drift",
    "drift_threshold": "Drift threshold (PSI)",
    "gate_alpha": "Gate α",
    "gate_min_gain": "Gate least gain",
    "gate_min_audit": "Audit labels to prove better",
    "gate_min_audit_first": "Audit labels for a first model",
    "gate_max_recall_drop": "Largest recall drop of a class",
}


def _with_help(form: forms.ModelForm) -> None:
    for name, field in form.fields.items():
        field.help_text = field.help_text or HELP.get(name, "")
        field.label = LABELS.get(name, field.label)
        if isinstance(field.widget, forms.Textarea):
            field.widget.attrs["rows"] = 6


class ProjectSettingsForm(forms.ModelForm):
    """Every setting a manager may change, with the model's bounds (validators) as the form's."""

    # Names separated by commas, not a JSON box; the model's validator bounds the list they make.
    shown_metadata_fields = forms.CharField(
        required=False, max_length=3000, label="Metadata shown to experts",
        help_text="Fields of each item's metadata that the labeling page shows, in this order, separated by commas "
                  "(at most 20 names); the rest of an item's metadata stays hidden from experts.",
    )

    class Meta:
        model = Project
        fields = [name for _, _, names in SETTINGS_SECTIONS for name in names]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _with_help(self)
        if not self.is_bound and self.instance.pk:
            self.initial["shown_metadata_fields"] = ", ".join(self.instance.shown_metadata_fields or [])

    def clean_shown_metadata_fields(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["shown_metadata_fields"].split(",") if name.strip()]

    def sections(self) -> list[dict[str, Any]]:
        """The bound fields grouped as the page shows them."""
        return [{"id": key, "title": title, "fields": [self[name] for name in names]}
                for key, title, names in SETTINGS_SECTIONS]


class ProjectCreateForm(forms.ModelForm):
    """What a new project needs before its first import."""

    class Meta:
        model = Project
        fields = ["name", "kind", "instructions", "query_strategy", "audit_share", "overlap", "show_suggestions"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _with_help(self)
        self.fields["kind"].help_text = "What the items are: texts, images, or rows of numeric features. Fixed once made."


class LabelRowForm(forms.Form):
    """One label of a new project: a row left without a name is ignored."""

    name = forms.CharField(max_length=100, required=False, strip=True)
    shortcut = forms.CharField(max_length=1, required=False, strip=False, label="Key")
    color = forms.RegexField(COLOR_PATTERN, required=False, error_messages={"invalid": COLOR_ERROR},
                             widget=forms.TextInput(attrs={"type": "color"}))


class LabelRowFormSet(forms.BaseFormSet):
    """The new project's labels: named ones only, at least two, names and keys unique."""

    def clean(self) -> None:
        if any(self.errors):
            return
        names, keys = set(), set()
        for form in self.forms:
            name, key = form.cleaned_data.get("name", ""), form.cleaned_data.get("shortcut", "")
            if not name:
                continue
            if name.casefold() in names:
                raise forms.ValidationError(f"Two labels are named “{name}”: give each label its own name.")
            if key and key.lower() in keys:
                raise forms.ValidationError(f"Two labels have the key “{key}”: give each label its own key.")
            names.add(name.casefold())
            keys.add(key.lower())
        if len(names) < LABELS_MIN:
            raise forms.ValidationError(f"Add at least {LABELS_MIN} labels: a model learns to tell labels apart.")

    def labels(self) -> list[dict[str, str]]:
        """The named rows, in order, as label fields."""
        return [{"name": f.cleaned_data["name"], "shortcut": f.cleaned_data.get("shortcut", ""),
                 "color": f.cleaned_data.get("color", "")} for f in self.forms if f.cleaned_data.get("name")]


LabelRows = forms.formset_factory(
    LabelRowForm, formset=LabelRowFormSet, extra=0, max_num=LABELS_MAX, validate_max=True, absolute_max=LABELS_MAX
)


def label_rows_initial() -> list[dict[str, str]]:
    """The empty rows the new-project page starts with, each in its own colour of the palette."""
    return [{"color": LABEL_PALETTE[i]} for i in range(LABEL_ROWS)]


class LabelForm(forms.ModelForm):
    """Add or change one label of a project; its key is unique in the project whatever its case."""

    color = forms.RegexField(COLOR_PATTERN, label="Colour", error_messages={"invalid": COLOR_ERROR},
                             widget=forms.TextInput(attrs={"type": "color"}))
    order = forms.IntegerField(required=False, min_value=0, max_value=LABEL_ORDER_MAX, widget=forms.HiddenInput)

    class Meta:
        model = Label
        fields = ["name", "shortcut", "color", "order"]
        labels = {"shortcut": "Key"}

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["shortcut"].help_text = ""  # the label above the one-key box says it all

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        others = Label.objects.filter(project=self.project).exclude(pk=self.instance.pk)
        name, key = data.get("name"), data.get("shortcut")
        if name and others.filter(name__iexact=name).exists():
            self.add_error("name", f"Another label is already named “{name}”.")
        if key and others.filter(shortcut__iexact=key).exists():
            self.add_error("shortcut", f"Another label already has the key “{key}”.")
        return data
