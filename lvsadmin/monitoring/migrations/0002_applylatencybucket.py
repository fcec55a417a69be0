# Written for ApplyLatencyBucket alone (the app's models.py held other, unmigrated work at the time).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0011_cluster_revision_changed_at'),
        ('monitoring', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApplyLatencyBucket',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('le', models.CharField(help_text='The bucket\'s upper bound as Prometheus writes it: 2.5, +Inf.', max_length=16)),
                ('count', models.PositiveBigIntegerField(default=0)),
                ('sum', models.FloatField(default=0, help_text='Seconds, of the applies counted in this bucket.')),
                ('cluster', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.cluster')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('cluster', 'le'), name='unique_apply_latency_bucket')],
            },
        ),
    ]
