from django.urls import include, path

urlpatterns = [
    path("", include("lvsadmin.web.urls")),
]
