"""App config of learner."""
from django.apps import AppConfig


class LearnerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "learner"
