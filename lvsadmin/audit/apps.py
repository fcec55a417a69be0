from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "lvsadmin.audit"
    label = "audit"
