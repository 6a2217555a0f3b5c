"""Reads of learner's data, one module per concern; other code calls the names re-exported here."""
from .features import (
    FEATURES_PENDING,
    features_plan,
    features_reconcile_targets,
    import_jobs_features_counted,
    items_lacking_features,
    project_featurizer,
)
from .models import (
    experiment_challengers,
    experiments_running,
    live_model_stale_reason,
    model_version_by_number,
    model_version_live,
    model_versions_list,
    predict_target,
    projects_with_live_model,
)
from .pages import (
    CURVE_MAX_POINTS,
    STAGES,
    drift_check_latest,
    model_status,
    model_version_row,
    model_versions_overview,
    training_runs_active,
    training_runs_recent,
)
from .pool import pool_matrix, pool_matrix_unlabeled, pool_scorable_count, pool_scorable_id_slices

__all__ = [
    "FEATURES_PENDING",
    "features_plan",
    "features_reconcile_targets",
    "import_jobs_features_counted",
    "items_lacking_features",
    "project_featurizer",
    "experiments_running",
    "live_model_stale_reason",
    "model_version_by_number",
    "model_version_live",
    "model_versions_list",
    "predict_target",
    "projects_with_live_model",
    "CURVE_MAX_POINTS",
    "STAGES",
    "drift_check_latest",
    "model_status",
    "model_version_row",
    "model_versions_overview",
    "training_runs_active",
    "training_runs_recent",
    "pool_matrix",
    "pool_matrix_unlabeled",
    "pool_scorable_count",
    "pool_scorable_id_slices",
]
