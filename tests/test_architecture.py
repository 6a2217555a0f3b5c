"""The architecture, checked: import contracts (import-linter), dead code (vulture), and module and function sizes."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotations", "learner", "labelhub")
PACKAGES = (*APPS, "stats")  # every top-level package of ours; stats is no app, but its code counts

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80

# Names frameworks call by convention: Django (model Meta, admin options, management commands, app configs,
# URLconfs, middleware hooks), DRF (handlers, validation, SerializerMethodField getters, view and paginator
# options), drf-spectacular (extensions). Project code names its own functions <entity>_<action>, never these.
FRAMEWORK_NAMES = [
    "Meta", "ordering", "constraints", "indexes", "managed", "default_auto_field", "verbose_name*", "*Config",
    "list_*", "search_fields", "readonly_fields", "raw_id_fields", "autocomplete_fields", "prepopulated_fields",
    "fieldsets", "inlines", "show_full_result_count", "has_*_permission",
    "Command", "help", "add_arguments", "handle",
    "urlpatterns", "handler404", "handler500", "application", "process_exception",
    "get", "post", "put", "patch", "delete", "get_*", "validate", "validate_*",
    "parser_classes", "content_negotiation_class", "page_size*", "max_page_size", "cursor_query_description",
    "default_detail", "default_code", "target_class",
]
# Functions registered by decorator: Celery tasks and signal handlers, admin actions and registrations.
FRAMEWORK_DECORATORS = ["@shared_task", "@*.connect", "@receiver", "@admin.*"]


def _chunk_after(text: str, heading: str) -> str:
    return text[text.index(heading):] if heading in text else text


def test_import_contracts_hold():
    """learner.ml stays free of Django and the apps, annotations never imports learner, no cycles (pyproject.toml)."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, _chunk_after(result.stdout, "Broken contracts") + result.stderr


def test_ml_and_stats_load_no_django_at_run_time():
    """Every module of learner.ml and stats imports in a fresh process without settings, loading no Django or app."""
    # import-linter reads the source; this runs it, so an import that a package's __init__ or a library makes
    # (labelhub/__init__.py loads the Celery app, which loads Django) cannot slip through.
    modules = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for folder in ("learner/ml", "stats") for path in (ROOT / folder).rglob("*.py"))
    assert {"learner.ml.gate", "learner.ml.abtest", "learner.ml.evaluation", "stats.paired"} <= set(modules)
    code = (f"import importlib, json, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    outside = {"django", "celery", "kombu", "rest_framework", "annotations", "labelhub"}
    leaked = sorted({".".join(name.split(".")[:2]) for name in loaded if name.split(".")[0] in outside
                     or (name.startswith("learner.") and not name.startswith("learner.ml"))})
    assert not leaked, f"Importing learner.ml and stats loaded (a package and its first modules): {leaked}"


def _names_used_by_django() -> set[str]:
    """Names Django, DRF and the templates read by name: model fields, choices, serializer fields, template lookups."""
    from django.apps import apps
    from django.db.models.enums import Choices
    from rest_framework.serializers import BaseSerializer

    import labelhub.urls  # noqa: F401  (loads every view, API and serializer)

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    def ours(cls: type) -> bool:
        return cls.__module__.split(".")[0] in APPS

    names = {field.name for model in apps.get_models() if ours(model) for field in model._meta.get_fields()}
    names |= {name for choices in subclasses(Choices) if ours(choices) for name in choices.names}
    names |= {name for serializer in subclasses(BaseSerializer) if ours(serializer)
              for name in getattr(serializer, "_declared_fields", {})}
    for template in (ROOT / "templates").rglob("*.html"):
        for tag in re.findall(r"\{[{%](.*?)[%}]\}", template.read_text(), flags=re.S):
            names.update(re.findall(r"\.([A-Za-z_]\w*)", tag))
    return names


def test_no_dead_code():
    """Vulture finds no unused function, class, variable or import in the apps (tests and bench count as users)."""
    from vulture import Vulture

    import tests.vulture_whitelist  # noqa: F401  (a whitelisted name that no longer exists fails here)

    used_by_name = _names_used_by_django()  # hundreds of exact names: a set lookup, not vulture's patterns
    vulture = Vulture(ignore_names=FRAMEWORK_NAMES, ignore_decorators=FRAMEWORK_DECORATORS)
    # Package __init__ modules only re-export, and a name in __all__ would count as used however dead it is.
    # labelhub/settings.py is read by Django by name, line by line. tests/vulture_whitelist.py names the rest.
    vulture.scavenge([str(ROOT / path) for path in (*PACKAGES, "bench", "tests")],
                     exclude=["*/migrations/*", "*/__init__.py", "*/labelhub/settings.py"])
    found = {}
    for item in vulture.get_unused_code(min_confidence=60):
        path = Path(item.filename).resolve().relative_to(ROOT).as_posix()
        if path.split("/")[0] in PACKAGES and item.name not in used_by_name:
            found[f"{path}:{item.name}"] = f"{path}:{item.first_lineno}: {item.message} ({item.confidence}% confidence)"
    dead = sorted(found.values())
    assert not dead, "Dead code (remove it, or whitelist what a framework calls by name in tests/vulture_whitelist.py):\n" + "\n".join(dead)


def _python_files() -> list[Path]:
    """Every Python module of the project but the tests and migrations (and the virtualenv, var/ and dot-folders)."""
    top = [path for path in ROOT.iterdir() if not path.name.startswith(".") and path.name not in {"tests", "var"}]
    files = [path for path in top if path.suffix == ".py"]
    files += [file for folder in top if folder.is_dir() for file in folder.rglob("*.py")]
    return sorted(file for file in files if "migrations" not in file.relative_to(ROOT).parts)


def test_no_module_or_function_too_long():
    """No module outside migrations and tests above 450 lines, no function above 80."""
    over = []
    for path in _python_files():
        name, text = path.relative_to(ROOT).as_posix(), path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            over.append(f"{name}: {lines} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    over.append(f"{name}:{node.lineno}: {node.name} is {length} lines (limit {MAX_FUNCTION_LINES})")
    assert not over, "Too long (split it):\n" + "\n".join(over)
