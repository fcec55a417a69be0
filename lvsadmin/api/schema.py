"""The OpenAPI schema and its Swagger page (drf-spectacular; Swagger UI from the sidecar package, served by the
panel itself: the CSP allows no other origin and no inline script, hence the split view, whose set-up script is a
separate request)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authentication import SessionAuthentication

from .authentication import BearerTokenAuthentication
from .permissions import SignedInOrToken
from .problems import CONTENT_TYPE


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "lvsadmin.api.authentication.BearerTokenAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An API token (lvs_…), made on the panel's API tokens page."}


def body_problems(result, generator, request, public):
    """POSTPROCESSING_HOOKS: every operation that reads a JSON body answers 400 to one that does not parse and 415
    to another media type (DRF's, as problems.handler words them): said once here, not by each view."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                for status in ("400", "415"):
                    operation["responses"].setdefault(status, {
                        "content": {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                        "description": ""})
    return result


class Schema(SpectacularAPIView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [SignedInOrToken]


class Docs(SpectacularSwaggerSplitView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [SignedInOrToken]
    url_name = "api:schema"
    template_name = "api/swagger_ui.html"
