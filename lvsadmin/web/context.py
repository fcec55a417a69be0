from django.conf import settings
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from .roles import Can


def panel(request):
    user = getattr(request, "user", None)
    return {
        "SITE_NAME": settings.SITE_NAME,
        "can": SimpleLazyObject(lambda: Can(user)),
        "now_utc": timezone.now(),
    }
