"""The API's representations of records: audit records and backups (the lists that only grow, read mostly).

Kept apart from serializers.py (the desired state's objects, which are written through the API)."""

from __future__ import annotations

from rest_framework import serializers


class AuditRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    time = serializers.DateTimeField()
    user = serializers.CharField(source="username", help_text="The user's name as it was at the time.")
    user_id = serializers.IntegerField(allow_null=True)
    request_id = serializers.CharField(help_text="Shared by every record of one request (X-Request-ID).")
    action = serializers.CharField()
    object_type = serializers.CharField()
    object_id = serializers.IntegerField(allow_null=True)
    object = serializers.CharField(source="object_repr")
    cluster = serializers.CharField(source="cluster_name")
    comment = serializers.CharField(help_text='"via API" for what a token did.')


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField(source="name")
    kind = serializers.ChoiceField(choices=["changed", "added", "removed"])
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class AuditRecordDetailSerializer(AuditRecordSerializer):
    before = serializers.JSONField(allow_null=True, help_text="The object before the change (null: created).")
    after = serializers.JSONField(allow_null=True, help_text="The object after the change (null: deleted).")
    changes = FieldChangeSerializer(many=True, help_text="Field by field, as the audit page shows them.")
    hash = serializers.CharField(help_text="This record's link in the hash chain.")
    prev_hash = serializers.CharField()


class AuditPageSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="The next (older) page; null on the last.")
    results = AuditRecordSerializer(many=True)


class BackupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    balancer = serializers.CharField(source="balancer.name")
    cluster = serializers.CharField(source="balancer.cluster.name")
    taken_at = serializers.DateTimeField()
    trigger = serializers.CharField(help_text="scheduled, manual, before_restore or uploaded")
    services = serializers.IntegerField(source="service_count")
    real_servers = serializers.IntegerField(source="destination_count")
    size = serializers.IntegerField(help_text="Bytes of text and JSON together.")
    ipvs_version = serializers.CharField()
    created_by = serializers.CharField()
    note = serializers.CharField()
    sha256 = serializers.CharField(help_text="The backup's fingerprint, as the panel shows it.")
    text_sha256 = serializers.CharField(help_text="SHA-256 of the ipvsadm -S text (?format=text).")


class BackupDetailSerializer(BackupSerializer):
    text = serializers.CharField(help_text="The table as ipvsadm -S -n prints it (?format=text: this alone).")
    document = serializers.JSONField(source="document_object",
                                     help_text="Lossless JSON: thresholds, timeouts, sync daemons, IPVS version.")
