"""Reads of annotations' data, one module per subdomain; the only way other apps read labels and items."""
from .listing import api_token_get
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
from .queue import (
    lease_get_for_user,
    queue_progress,
    queue_scoring_current,
    queue_scorings_complete,
)
from .scoring import (
    import_items_unscored,
    item_scores_top,
    labeled_item_ids,
    pool_unlabeled_item_ids,
    queue_done_item_ids,
    scoring_current,
    scoring_get,
    scoring_latest_id,
    scoring_newest_standing,
)

__all__ = [
    "api_token_get",
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
    "lease_get_for_user",
    "queue_progress",
    "queue_scoring_current",
    "queue_scorings_complete",
    "import_items_unscored",
    "item_scores_top",
    "labeled_item_ids",
    "pool_unlabeled_item_ids",
    "queue_done_item_ids",
    "scoring_current",
    "scoring_get",
    "scoring_latest_id",
    "scoring_newest_standing",
]
