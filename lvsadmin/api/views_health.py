"""Health checks over the API: a service's check, its health policy, and one real server's override, each a
resource of its own with its own ETag (the versions the health forms carry), changed with PUT and If-Match
through core.services.health (the same validation and messages as the forms, audited "via API")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from lvsadmin.core import versions
from lvsadmin.core.models import RealServer, VirtualService
from lvsadmin.core.services import health
from lvsadmin.health.spec import NO_CHECK

from .problems import problem
from .views import IF_MATCH, Endpoint, actor, if_match, problems

KIND_HELP = ("A check: `kind` (tcp, http, https, dns, misc) and its fields (port, interval, timeout, fall, rise, "
             "source; http(s): method, path, host, expect, body, verify_tls; dns: query, qtype; misc: command, "
             "dynamic); {\"kind\": \"none\"}: no check")


def _shown(snapshot: dict) -> dict:
    """A check's audit snapshot as the API shows it: its kind under `kind`."""
    out = dict(snapshot)
    out["kind"] = out.pop("check")
    return out


def _answer(data: dict, version: str, status: int = 200) -> Response:
    return Response(data, status=status, headers={"ETag": f'"{version}"'})


def _object_body(request) -> dict:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["a JSON object of the fields"]})
    return dict(request.data)


class HealthResource(Endpoint):
    write_scope = "write"
    http_method_names = ["get", "put", "head", "options"]

    def current(self, obj) -> dict:
        raise NotImplementedError

    def get(self, request, pk):
        obj = self.get_object()
        data = self.current(obj)
        return _answer(data, versions.version(self.snapshot_of(obj)))

    def put(self, request, pk):
        obj = self.get_object()
        expected = if_match(request)
        body = _object_body(request)
        try:
            self.store(actor(request), obj, body, expected)
        except versions.StaleEdit as exc:
            fresh = self.get_object()
            return problem(409, str(exc), current=self.current(fresh), version=exc.version,
                           headers={"ETag": f'"{exc.version}"'})
        fresh = self.get_object()
        return _answer(self.current(fresh), versions.version(self.snapshot_of(fresh)))


@extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(404)}, methods=["GET"], description=KIND_HELP)
@extend_schema(parameters=[IF_MATCH], request=OpenApiTypes.OBJECT, description=KIND_HELP,
               responses={200: OpenApiTypes.OBJECT, **problems(404, 409, 422, 428)}, methods=["PUT"])
class ServiceCheck(HealthResource):
    queryset = VirtualService.objects.select_related("cluster")

    def snapshot_of(self, svc):
        row = health.service_check_row(svc)
        return health.check_snapshot(row.to_check() if row else None)

    def current(self, svc):
        return _shown(self.snapshot_of(svc))

    def store(self, actor, svc, body, expected):
        values = None if str(body.get("kind", "")).lower() == NO_CHECK else body
        health.set_service_check(actor, svc, values, expected_version=expected)


@extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(404)}, methods=["GET"],
               description="What the service does with its servers' health: on_failure, quorum, hysteresis, "
                           "sorry_server, sorry_forward, max_down_share, slow_start, start_down")
@extend_schema(parameters=[IF_MATCH], request=OpenApiTypes.OBJECT,
               responses={200: OpenApiTypes.OBJECT, **problems(404, 409, 422, 428)}, methods=["PUT"])
class ServiceHealthPolicy(HealthResource):
    queryset = VirtualService.objects.select_related("cluster")

    def snapshot_of(self, svc):
        return health.policy_snapshot(svc.to_policy())

    def current(self, svc):
        return self.snapshot_of(svc)

    def store(self, actor, svc, body, expected):
        health.set_health_policy(actor, svc, body, expected_version=expected)


@extend_schema(responses={200: OpenApiTypes.OBJECT, **problems(404)}, methods=["GET"],
               description=KIND_HELP + "; {\"kind\": \"inherit\"}: its service's check")
@extend_schema(parameters=[IF_MATCH], request=OpenApiTypes.OBJECT,
               description=KIND_HELP + "; {\"kind\": \"inherit\"}: its service's check",
               responses={200: OpenApiTypes.OBJECT, **problems(404, 409, 422, 428)}, methods=["PUT"])
class ServerCheck(HealthResource):
    queryset = RealServer.objects.select_related("service__cluster")

    def snapshot_of(self, rs):
        return health.override_snapshot(health.server_override_row(rs))

    def current(self, rs):
        return _shown(self.snapshot_of(rs))

    def store(self, actor, rs, body, expected):
        kind = str(body.get("kind", "")).lower()
        values = None if kind == health.INHERIT else NO_CHECK if kind == NO_CHECK else body
        health.set_server_check(actor, rs, values, expected_version=expected)
