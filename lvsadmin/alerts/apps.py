from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "lvsadmin.alerts"
    label = "alerts"
