from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "lvsadmin.web"
    label = "web"
