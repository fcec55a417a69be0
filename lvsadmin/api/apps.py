from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "lvsadmin.api"
    label = "api"
    verbose_name = "REST API"
