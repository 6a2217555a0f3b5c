"""Writes of annotations' data, one module per subdomain; other code calls the names re-exported here."""
from .clients import api_client_create, api_client_remove, api_client_token_issue, api_client_username
from .images import image_check, image_decode
from .projects import (
    api_token_regenerate,
    api_token_revoke,
    label_create,
    label_update,
    project_create,
    project_overlap_apply,
    project_update,
)
from .queue.labeling import (
    LABELS_ADDED_COALESCE_SECONDS,
    annotation_submit,
    annotation_submit_or_get,
    annotation_undo,
)
from .queue.leases import lease_release, lease_renew, lease_skip
from .queue.serving import MAX_ACTIVE_LEASES, queue_next
from .review import (
    annotation_change_own,
    annotation_correct,
    item_gold_set,
    item_resolve,
)
from .score_partitions import (
    item_scores_index,
    item_scores_index_rest,
    item_scores_prune,
    item_scores_prune_stale,
)
from .score_storage import (
    ChunkStoredAlready,
    ScoreColumns,
    ScoringGone,
    item_scores_priorities_set,
    item_scores_store,
    item_scores_store_chunk,
    scoring_chunk_done,
    scoring_chunk_is_stored,
    scoring_chunk_ranges,
)
from .scoring import (
    scoring_chunks_record,
    scoring_complete,
    scoring_fail,
    scoring_progress_mark,
    scoring_start,
)

__all__ = [
    "api_client_create",
    "api_client_remove",
    "api_client_token_issue",
    "api_client_username",
    "image_check",
    "image_decode",
    "api_token_regenerate",
    "api_token_revoke",
    "label_create",
    "label_update",
    "project_create",
    "project_overlap_apply",
    "project_update",
    "LABELS_ADDED_COALESCE_SECONDS",
    "MAX_ACTIVE_LEASES",
    "annotation_submit",
    "annotation_submit_or_get",
    "annotation_undo",
    "lease_release",
    "lease_renew",
    "lease_skip",
    "queue_next",
    "annotation_change_own",
    "annotation_correct",
    "item_gold_set",
    "item_resolve",
    "ScoreColumns",
    "ChunkStoredAlready",
    "ScoringGone",
    "item_scores_index",
    "item_scores_index_rest",
    "item_scores_prune",
    "item_scores_prune_stale",
    "item_scores_priorities_set",
    "item_scores_store",
    "item_scores_store_chunk",
    "scoring_chunk_is_stored",
    "scoring_chunk_ranges",
    "scoring_chunk_done",
    "scoring_chunks_record",
    "scoring_complete",
    "scoring_fail",
    "scoring_progress_mark",
    "scoring_start",
]
