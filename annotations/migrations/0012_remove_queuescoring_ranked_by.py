"""One model: the live version ranks the queue too, so a scoring no longer names a separate ranking version."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("annotations", "0011_promotion_rule_withheld_suggestions")]

    operations = [
        migrations.RemoveField(model_name="queuescoring", name="ranked_by"),
    ]
