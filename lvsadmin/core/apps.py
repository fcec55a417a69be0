from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "lvsadmin.core"
    label = "core"
