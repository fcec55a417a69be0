from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "lvsadmin.monitoring"
    label = "monitoring"
