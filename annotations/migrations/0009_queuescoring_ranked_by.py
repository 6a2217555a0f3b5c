"""QueueScoring.ranked_by: the model version whose uncertainty orders the queue, when it is not the live one."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotations", "0008_item_score_storage")]

    operations = [
        migrations.AddField(
            model_name="queuescoring",
            name="ranked_by",
            field=models.PositiveIntegerField(
                blank=True, null=True,
                help_text="The version whose uncertainty orders the queue when it is not model_version.",
            ),
        ),
    ]
