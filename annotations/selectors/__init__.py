"""Reads of annotations' data, one module per subdomain; the only way other apps read labels and items."""
from .projects import (
    ROLE_RANK,
    import_job_get_for_user,
    import_job_progress,
    import_jobs_recent,
    import_progress_key,
    membership_role,
    project_counts,
    project_get_for_user,
    project_labels,
    project_list_for_user,
)

__all__ = [
    "ROLE_RANK",
    "import_job_get_for_user",
    "import_job_progress",
    "import_jobs_recent",
    "import_progress_key",
    "membership_role",
    "project_counts",
    "project_get_for_user",
    "project_labels",
    "project_list_for_user",
]
