"""Writes of annotations' data, one module per subdomain; other code calls the names re-exported here."""
from .imports import (
    import_file,
    import_files,
    import_job_create,
    import_job_features_progress,
    import_job_run,
    import_jobs_submit,
    import_upload_check,
)

__all__ = [
    "import_file",
    "import_files",
    "import_job_create",
    "import_job_features_progress",
    "import_job_run",
    "import_jobs_submit",
    "import_upload_check",
]
