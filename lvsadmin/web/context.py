from django.conf import settings


def panel(request):
    return {"SITE_NAME": settings.SITE_NAME}
