"""Text projects made before TF-IDF became the text default keep the hashed n-grams their models were trained on.

An empty featurizer means the kind's default; without this, every existing text project would
switch featurizer on upgrade and recompute its features. Projects made from now on get TF-IDF.
"""
from django.db import migrations


def keep_hashed(apps, schema_editor):
    Project = apps.get_model("annotations", "Project")
    Project.objects.filter(kind="text", featurizer="").update(featurizer="text-hashed")


class Migration(migrations.Migration):
    dependencies = [("annotations", "0020_featurizer_model_embeddings")]

    operations = [migrations.RunPython(keep_hashed, migrations.RunPython.noop)]
