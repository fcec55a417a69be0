"""The API's plumbing (the actor of a request, If-Match, filters, sorting, the stale answer) and its read-only
endpoints: clusters and balancers. Services and real servers are in views_desired.py.

Every endpoint needs a bearer token (authentication.py) with the scope the view names (`read_scope`,
`write_scope`: permissions.py); errors are problem details (problems.py). Lists page with `limit` and `offset`
and take a constant number of queries whatever the page size.
"""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response
from rest_framework.views import APIView

from lvsadmin.audit.log import Actor
from lvsadmin.core import versions
from lvsadmin.core.models import Balancer, Cluster, ServiceSample, offline_cutoff
from lvsadmin.web import live

from .problems import CONTENT_TYPE, PreconditionRequired, problem
from .serializers import BalancerSerializer, ClusterSerializer, ProblemSerializer

API_COMMENT = "via API"
MAX_FILTER_LENGTH = 200


def problems(*codes: int) -> dict:
    """The problem responses of an operation, for the schema."""
    return {(code, CONTENT_TYPE): ProblemSerializer for code in (401, 403, 429, *codes)}


def actor(request) -> Actor:
    """The token's user, the request's id (shared by every record of the request) and "via API"."""
    return Actor.for_user(request.user, getattr(request, "request_id", None), comment=API_COMMENT)


def if_match(request) -> str:
    """The version a write is based on, from If-Match (an ETag of a GET, or the object's `version`)."""
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        raise PreconditionRequired()
    value = header.removeprefix("W/").strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def with_etag(data, obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(data, status=status, headers={"ETag": f'"{versions.version_of(obj)}"', **(headers or {})})


def stale(exc: versions.StaleEdit, current, serializer_class) -> Response:
    """409: nothing was written; the object as it is now, its version and, when known, what changed."""
    changes = None if exc.changes is None else [
        {"field": c.field, "yours": c.loaded, "now": c.current} for c in exc.changes]
    return problem(409, str(exc), current=serializer_class(current).data, version=exc.version, changes=changes,
                   headers={"ETag": f'"{exc.version}"'})


IF_MATCH = OpenApiParameter("If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
                            description="The ETag (or `version`) of the object this change is based on.")


class Filters:
    """Query-string filters and sorting of a list: `filters` maps a parameter to (lookup, parser), `ordering`
    names the fields one may sort by (`?ordering=address,-port`). A bad value is a 422 naming the parameter."""

    def __init__(self, filters: dict, ordering: dict[str, str], default: tuple[str, ...]):
        self.filters, self.ordering, self.default = filters, ordering, default

    def apply(self, queryset, params):
        errors = {}
        for name, (lookup, parse) in self.filters.items():
            if name not in params:
                continue
            raw = params[name]
            try:
                if len(raw) > MAX_FILTER_LENGTH or "\x00" in raw:
                    raise ValueError
                queryset = queryset.filter(**{lookup: parse(raw)})
            except (ValueError, OverflowError):
                errors[name] = [f"{raw[:40]!r} is not a valid {name}"]
        order = self._ordering(params.get("ordering", ""), errors)
        if errors:
            raise exceptions.ValidationError(errors)
        return queryset.order_by(*order)

    def _ordering(self, text: str, errors: dict) -> tuple[str, ...]:
        if not text:
            return self.default
        out = []
        for item in text.split(","):
            field = self.ordering.get(item.strip().lstrip("-"))
            if field is None:
                errors["ordering"] = [f"sort by one of {', '.join(self.ordering)} (a leading - reverses)"]
                return self.default
            out.append(("-" if item.strip().startswith("-") else "") + field)
        return (*out, "id")

    def parameters(self) -> list[OpenApiParameter]:
        """The filters with the bounds `apply` enforces (a value outside them is a 422), so the schema says them."""
        text = {"type": "string", "maxLength": MAX_FILTER_LENGTH, "pattern": "^[^\\x00]*$"}
        number = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
        fields = "|".join(self.ordering)
        return [OpenApiParameter(name, number if parse is pk else text)
                for name, (_, parse) in self.filters.items()] + [
            OpenApiParameter("ordering", {"type": "string", "pattern": f"^-?({fields})(,-?({fields}))*$"},
                             description=f"Comma-separated, a leading - reverses: {', '.join(self.ordering)}")]


def pk(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise ValueError
    return value


class Endpoint(generics.GenericAPIView):
    read_scope = "read"
    write_scope: str | None = None
    list_filters: Filters | None = None

    def filter_queryset(self, queryset):
        if self.list_filters is None or self.request.method != "GET" or self.lookup_url_kwarg_value() is not None:
            return queryset
        return self.list_filters.apply(queryset, self.request.query_params)

    def lookup_url_kwarg_value(self):
        return self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)


# --- clusters ----------------------------------------------------------------------------------------

CLUSTER_FILTERS = Filters({"name": ("name", str)}, {"name": "name", "id": "id"}, ("name", "id"))


def clusters():
    return Cluster.objects.annotate(service_count=Count("services", distinct=True),
                                    balancer_count=Count("balancers", distinct=True))


@extend_schema(parameters=CLUSTER_FILTERS.parameters(), responses={200: ClusterSerializer(many=True), **problems(422)})
class ClusterList(Endpoint, generics.ListAPIView):
    serializer_class = ClusterSerializer
    list_filters = CLUSTER_FILTERS

    def get_queryset(self):
        return clusters()


@extend_schema(responses={200: ClusterSerializer, **problems(404)})
class ClusterDetail(Endpoint, generics.RetrieveAPIView):
    serializer_class = ClusterSerializer
    lookup_field = "name"

    def get_queryset(self):
        return clusters()

    def retrieve(self, request, *args, **kwargs):
        cluster = self.get_object()
        return with_etag(self.get_serializer(cluster).data, cluster)


# --- balancers ---------------------------------------------------------------------------------------

BALANCER_FILTERS = Filters({"cluster": ("cluster__name", str), "name": ("name", str)},
                           {"name": "name", "cluster": "cluster__name", "last_seen": "last_seen", "id": "id"},
                           ("cluster__name", "name"))


def with_live_state(balancers: list[Balancer]) -> list[Balancer]:
    """Each balancer's effective status and its latest counters (summed over its services): one query."""
    by_id = {b.pk: b for b in balancers}
    for b in balancers:
        b.effective_status = live.effective_status(b, b.cluster.desired_revision)
        b.counters = live.Counters()
    cutoff = offline_cutoff()
    for sample in ServiceSample.objects.filter(balancer_id__in=list(by_id)).only("balancer_id", "sampled_at", "data"):
        by_id[sample.balancer_id].counters.add(sample.data or {}, sample.sampled_at, sample.sampled_at < cutoff)
    return balancers


@extend_schema(parameters=BALANCER_FILTERS.parameters(),
               responses={200: BalancerSerializer(many=True), **problems(422)})
class BalancerList(Endpoint, generics.ListAPIView):
    serializer_class = BalancerSerializer
    list_filters = BALANCER_FILTERS

    def get_queryset(self):
        return Balancer.objects.select_related("cluster")

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(with_live_state(list(page)), many=True).data)


@extend_schema(responses={200: BalancerSerializer, **problems(404)})
class BalancerDetail(Endpoint, generics.RetrieveAPIView):
    serializer_class = BalancerSerializer
    lookup_field = "name"

    def get_queryset(self):
        return Balancer.objects.select_related("cluster")

    def retrieve(self, request, *args, **kwargs):
        balancer = with_live_state([self.get_object()])[0]
        return with_etag(self.get_serializer(balancer).data, balancer)


class NotFound(APIView):
    """Any other URL under /api/: a problem, not the panel's HTML 404 page."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    schema = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise exceptions.NotFound("no such endpoint: see /api/v1/schema/")
