"""API tokens over the API: list them and revoke one. A token with the `admin` scope (an admin's) sees and
revokes everyone's; any other sees and revokes only its own user's (another's is a 404, as if absent).

Revoking needs only `read`: it takes a credential away, as the tokens page lets every role do with its own. The
write is tokens.revoke_token's (audited "via API"); revoking a revoked token changes nothing.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response

from . import tokens
from .models import ApiToken
from .serializers import ApiTokenSerializer
from .views import Endpoint, Filters, actor, problems

TOKEN_FILTERS = Filters({"user": ("user__username", str), "name": ("name", str)},
                        {"created": "created", "name": "name", "user": "user__username", "last_used": "last_used",
                         "id": "id"},
                        ("user__username", "-created"))


class TokenEndpoint(Endpoint):
    serializer_class = ApiTokenSerializer
    write_scope = "read"

    def get_queryset(self):
        queryset = ApiToken.objects.select_related("user")
        if tokens.allowed(self.request.auth, "admin"):
            return queryset
        return queryset.filter(user=self.request.auth.user)


@extend_schema(parameters=TOKEN_FILTERS.parameters(), responses={200: ApiTokenSerializer(many=True), **problems(422)})
class TokenList(TokenEndpoint, generics.ListAPIView):
    list_filters = TOKEN_FILTERS


@extend_schema(responses={200: ApiTokenSerializer, **problems(404)}, methods=["GET"])
@extend_schema(responses={200: ApiTokenSerializer, **problems(404)}, methods=["DELETE"])
class TokenDetail(TokenEndpoint, generics.RetrieveAPIView):
    def delete(self, request, *args, **kwargs):
        """Revoke the token: refused from the next request on (this one, if it is the token used, still ends)."""
        token = tokens.revoke_token(actor(request), self.get_object())
        return Response(ApiTokenSerializer(token).data)
