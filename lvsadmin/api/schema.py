"""The OpenAPI schema and its Swagger page (drf-spectacular; Swagger UI from the sidecar package, served by the
panel itself: the CSP allows no other origin and no inline script, hence the split view, whose set-up script is a
separate request)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authentication import SessionAuthentication

from .authentication import BearerTokenAuthentication
from .permissions import SignedInOrToken


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "lvsadmin.api.authentication.BearerTokenAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API token (lvs_…), made on the panel's API tokens page."}


class Schema(SpectacularAPIView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [SignedInOrToken]


class Docs(SpectacularSwaggerSplitView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [SignedInOrToken]
    url_name = "api:schema"
    template_name = "api/swagger_ui.html"
