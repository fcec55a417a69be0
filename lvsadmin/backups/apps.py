from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "lvsadmin.backups"
    label = "backups"
