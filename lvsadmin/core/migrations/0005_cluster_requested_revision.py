# Cluster.requested_revision: the newest revision an operator applied, written by apply. Until now the resync
# read it from the newest `apply` audit record of the cluster; existing clusters take it from there.

from django.db import migrations, models


def fill_from_the_newest_apply_record(apps, schema_editor):
    Cluster = apps.get_model("core", "Cluster")
    ChangeRecord = apps.get_model("audit", "ChangeRecord")
    for cluster in Cluster.objects.only("pk"):
        rec = (ChangeRecord.objects.filter(action="apply", object_type="cluster", cluster_id=cluster.pk)
               .order_by("-id").only("after").first())
        if rec is not None and isinstance(rec.after, dict) and rec.after.get("revision"):
            Cluster.objects.filter(pk=cluster.pk).update(requested_revision=int(rec.after["revision"]))


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0003_keyed_chain_witnesses'),
        ('core', '0004_reported_table_digest_sync_settings'),
    ]

    operations = [
        migrations.AddField(
            model_name='cluster',
            name='requested_revision',
            field=models.PositiveBigIntegerField(default=0, help_text='The newest revision an operator applied (written by apply; the resync reads it).'),
        ),
        migrations.RunPython(fill_from_the_newest_apply_record, migrations.RunPython.noop),
    ]
