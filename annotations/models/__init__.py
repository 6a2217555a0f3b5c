"""Projects, labels, items, annotations, memberships, invitations, import jobs, leases and queue scores.

One module per part; everything is importable from here, as the migrations name it.
"""
from annotations.models.import_jobs import ImportJob, import_upload_path
from annotations.models.invitations import INVITABLE_ROLES, Invitation
from annotations.models.items import (
    Annotation,
    AnnotationCorrection,
    Item,
    ItemEmbedding,
    item_image_path,
    random_key,
)
from annotations.models.projects import (
    DEGRADATION_WINDOW_MAX,
    DRIFT_THRESHOLD_MAX,
    EMBEDDING_MAX_DIMENSIONS,
    INSTRUCTIONS_MAX_CHARS,
    LABEL_ORDER_MAX,
    LEASE_TTL_MAX_SECONDS,
    RETRAIN_EVERY_MAX,
    RETRAIN_INTERVAL_MAX_MINUTES,
    Label,
    Membership,
    Project,
)
from annotations.models.queue import SKIP_REASON_MAX_CHARS, ItemScore, Lease, QueueScoring

__all__ = [
    "Annotation",
    "AnnotationCorrection",
    "DEGRADATION_WINDOW_MAX",
    "DRIFT_THRESHOLD_MAX",
    "EMBEDDING_MAX_DIMENSIONS",
    "INSTRUCTIONS_MAX_CHARS",
    "ImportJob",
    "ItemEmbedding",
    "INVITABLE_ROLES",
    "Invitation",
    "Item",
    "ItemScore",
    "LABEL_ORDER_MAX",
    "LEASE_TTL_MAX_SECONDS",
    "Label",
    "Lease",
    "Membership",
    "Project",
    "QueueScoring",
    "RETRAIN_EVERY_MAX",
    "RETRAIN_INTERVAL_MAX_MINUTES",
    "SKIP_REASON_MAX_CHARS",
    "import_upload_path",
    "item_image_path",
    "random_key",
]
