from django.urls import include, path

urlpatterns = [
    path("api/", include("lvsadmin.api.urls")),
    path("", include("lvsadmin.web.urls")),
]
