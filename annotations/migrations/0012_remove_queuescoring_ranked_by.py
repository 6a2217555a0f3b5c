"""One model: the live version ranks the queue, so a scoring names no separate ranking version; audit_share's help."""
import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotations", "0011_promotion_rule_withheld_suggestions")]

    operations = [
        migrations.RemoveField(model_name="queuescoring", name="ranked_by"),
        migrations.AlterField(
            model_name="project",
            name="audit_share",
            field=models.FloatField(
                default=0.1,
                help_text="Share of served items drawn uniformly at random and used to evaluate models. Until the "
                          "first model ranks the queue, at least half are, so that it can go live within a few dozen "
                          "labels.",
                validators=[
                    django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)
                ],
            ),
        ),
    ]
