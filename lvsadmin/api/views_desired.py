"""The desired state over the API: virtual services and real servers, full CRUD with every ipvsadm field.

Writes go through the service layer only (core.services: the kernel's rules, the audit record, the revision
bump), as the token's user with "via API". Changing or deleting needs If-Match with the version the change is
based on: none is a 428, a stale one a 409 with the current state, and nothing is written.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response

from lvsadmin.core import services, versions
from lvsadmin.core.models import RealServer, VirtualService

from .serializers import RealServerSerializer, ServiceSerializer
from .views import IF_MATCH, Endpoint, Filters, actor, if_match, pk, problems, stale, with_etag

SERVICE_FILTERS = Filters(
    {"cluster": ("cluster__name", str), "protocol": ("protocol", str), "address": ("address", str),
     "port": ("port", pk), "fwmark": ("fwmark", pk), "scheduler": ("scheduler", str), "name": ("name", str)},
    {"position": "position", "address": "address", "port": "port", "protocol": "protocol", "name": "name",
     "cluster": "cluster__name", "id": "id"},
    ("cluster__name", "position", "id"))
REAL_SERVER_FILTERS = Filters(
    {"service": ("service_id", pk), "cluster": ("service__cluster__name", str), "address": ("address", str),
     "port": ("port", pk), "state": ("state", str), "forward": ("forward", str), "name": ("name", str)},
    {"position": "position", "address": "address", "port": "port", "weight": "weight", "state": "state",
     "service": "service_id", "id": "id"},
    ("service__cluster__name", "service__position", "service_id", "position", "id"))


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["a JSON object of the fields"]})
    return request.data


class DesiredList(Endpoint, generics.ListCreateAPIView):
    """GET: the list; POST: create one (its parent named in the body)."""

    write_scope = "write"
    parent_field = ""

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=_body(request))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        parent = data.pop(self.parent_field, None)
        if parent is None:
            raise exceptions.ValidationError({self.parent_field: [f"required: the {self.parent_field} it belongs to"]})
        obj = self.save(actor(request), parent, data)
        return with_etag(self.get_serializer(obj).data, obj, status=201,
                         headers={"Location": reverse(self.detail_url, args=[obj.pk])})


class DesiredDetail(Endpoint, generics.RetrieveUpdateDestroyAPIView):
    """GET one (with its ETag), PUT (every field) or PATCH (some) with If-Match, DELETE with If-Match."""

    write_scope = "write"
    parent_field = ""
    fields: tuple[str, ...] = ()

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        return with_etag(self.get_serializer(obj).data, obj)

    def update(self, request, *args, **kwargs):
        obj = self.get_object()
        expected = if_match(request)
        body = _body(request)
        if not kwargs.get("partial"):
            missing = [f for f in self.fields if f not in body]
            if missing:
                raise exceptions.ValidationError({f: ["PUT replaces every field: this one is missing (or use PATCH)"]
                                                  for f in missing})
        serializer = self.get_serializer(obj, data=body, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        parent = data.pop(self.parent_field, None)
        if parent is not None and parent.pk != getattr(obj, f"{self.parent_field}_id"):
            raise exceptions.ValidationError({self.parent_field: [
                f"cannot move it to another {self.parent_field}: create it there and delete this one"]})
        try:
            obj = self.change(actor(request), obj, expected, data)
        except versions.StaleEdit as exc:
            return stale(exc, self.get_object(), self.serializer_class)
        return with_etag(self.get_serializer(obj).data, obj)

    def destroy(self, request, *args, **kwargs):
        obj = self.get_object()
        expected = if_match(request)
        try:
            self.remove(actor(request), obj, expected)
        except versions.StaleEdit as exc:
            return stale(exc, self.get_object(), self.serializer_class)
        return Response(status=204)


# --- virtual services ---------------------------------------------------------------------------------


@extend_schema(parameters=SERVICE_FILTERS.parameters(), responses={200: ServiceSerializer(many=True), **problems(422)},
               methods=["GET"])
@extend_schema(request=ServiceSerializer, responses={201: ServiceSerializer, **problems(422)}, methods=["POST"])
class ServiceList(DesiredList):
    serializer_class = ServiceSerializer
    list_filters = SERVICE_FILTERS
    parent_field = "cluster"
    detail_url = "api:service"

    def get_queryset(self):
        return VirtualService.objects.select_related("cluster")

    def save(self, actor, cluster, data):
        return services.create_service(actor, cluster, **data)


@extend_schema(responses={200: ServiceSerializer, **problems(404)}, methods=["GET"])
@extend_schema(parameters=[IF_MATCH], responses={200: ServiceSerializer, **problems(404, 409, 422, 428)},
               methods=["PUT", "PATCH"])
@extend_schema(parameters=[IF_MATCH], responses={204: None, **problems(404, 409, 428)}, methods=["DELETE"])
class ServiceDetail(DesiredDetail):
    serializer_class = ServiceSerializer
    parent_field = "cluster"
    fields = services.SERVICE_FIELDS

    def get_queryset(self):
        return VirtualService.objects.select_related("cluster")

    def change(self, actor, svc, expected, data):
        return services.update_service(actor, svc, expected_version=expected, **data)

    def remove(self, actor, svc, expected):
        services.delete_service(actor, svc, expected_version=expected)


# --- real servers ------------------------------------------------------------------------------------


@extend_schema(parameters=REAL_SERVER_FILTERS.parameters(),
               responses={200: RealServerSerializer(many=True), **problems(422)}, methods=["GET"])
@extend_schema(request=RealServerSerializer, responses={201: RealServerSerializer, **problems(422)}, methods=["POST"])
class RealServerList(DesiredList):
    serializer_class = RealServerSerializer
    list_filters = REAL_SERVER_FILTERS
    parent_field = "service"
    detail_url = "api:real_server"

    def get_queryset(self):
        return RealServer.objects.select_related("service__cluster")

    def save(self, actor, svc, data):
        return services.create_real_server(actor, svc, **data)


@extend_schema(responses={200: RealServerSerializer, **problems(404)}, methods=["GET"])
@extend_schema(parameters=[IF_MATCH], responses={200: RealServerSerializer, **problems(404, 409, 422, 428)},
               methods=["PUT", "PATCH"])
@extend_schema(parameters=[IF_MATCH], responses={204: None, **problems(404, 409, 428)}, methods=["DELETE"])
class RealServerDetail(DesiredDetail):
    serializer_class = RealServerSerializer
    parent_field = "service"
    fields = services.REAL_SERVER_FIELDS

    def get_queryset(self):
        return RealServer.objects.select_related("service__cluster")

    def change(self, actor, rs, expected, data):
        return services.update_real_server(actor, rs, expected_version=expected, **data)

    def remove(self, actor, rs, expected):
        services.delete_real_server(actor, rs, expected_version=expected)
