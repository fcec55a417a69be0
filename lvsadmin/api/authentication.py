"""`Authorization: Bearer <token>`: the API's only credential for its data (no session, so no CSRF to forget).

The schema and its Swagger page also take the panel's session, for a signed-in user reading the docs.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from . import tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <token>, with one token and no spaces in it")
        try:
            text = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        try:
            token = tokens.check(text, request.META.get("REMOTE_ADDR"))
        except tokens.Refused as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return token.user, token

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) to a request without a token, with how to authenticate.
        return f'{self.keyword} realm="api"'
