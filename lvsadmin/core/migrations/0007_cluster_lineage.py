# Each cluster gets a lineage of its own (AddField alone would give every existing cluster the same one).

import secrets

from django.db import migrations, models

import lvsadmin.core.models


def one_each(apps, schema_editor):
    Cluster = apps.get_model("core", "Cluster")
    for pk in Cluster.objects.values_list("pk", flat=True):
        Cluster.objects.filter(pk=pk).update(lineage=secrets.token_hex(16))


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0006_balancer_keys_security_events'),
    ]

    operations = [
        migrations.AddField(
            model_name='cluster',
            name='lineage',
            field=models.CharField(default=lvsadmin.core.models.new_lineage, editable=False, max_length=32),
        ),
        migrations.RunPython(one_each, migrations.RunPython.noop),
    ]
