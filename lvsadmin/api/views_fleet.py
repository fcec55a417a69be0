"""Clusters and balancers written over the API: create (POST), change (PATCH) and delete, a balancer's enrolment
token and its agent's key.

The panel lets only admins do these (web/views/clusters.py), so the writes need the `admin` scope. They go
through the service layer as the forms do (its messages, the audit record "via API"); changing or deleting needs
If-Match: none is a 428, a stale one a 409 with the current state, and nothing is written. A balancer made here
answers the one-time token its agent enrols with, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response

from lvsadmin.core import services, versions
from lvsadmin.core.models import Balancer

from . import views
from .serializers import (
    BalancerKeySerializer,
    BalancerSerializer,
    ClusterSerializer,
    EnrolmentTokenSerializer,
    NewBalancerSerializer,
)
from .views import IF_MATCH, actor, if_match, problems, stale, with_etag
from .views_desired import _body as json_object

ADMIN = "admin"


def _cluster(pk: int):
    return views.clusters().get(pk=pk)


def _balancer(pk: int) -> Balancer:
    return views.with_live_state([Balancer.objects.select_related("cluster").get(pk=pk)])[0]


def _valid(serializer) -> dict:
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# PATCH and DELETE of one cluster or balancer (admin): If-Match required, a stale one a 409 with the object as it
# is now, nothing written. `current` reads it as the GET shows it; `change`/`remove` are the service's writes.
# (A comment, not a docstring: drf-spectacular would print a docstring as every operation's description.)
class VersionedWrites:
    write_scope = ADMIN
    current: Callable[[int], Any]
    change: Callable[..., Any]
    remove: Callable[..., Any]

    def patch(self, request, *args, **kwargs):
        obj = self.get_object()
        expected = if_match(request)
        data = _valid(self.serializer_class(obj, data=json_object(request), partial=True))
        try:
            self.change(actor(request), obj, expected_version=expected, **data)
        except versions.StaleEdit as exc:
            return stale(exc, self.current(obj.pk), self.serializer_class)
        obj = self.current(obj.pk)
        return with_etag(self.serializer_class(obj).data, obj)

    def delete(self, request, *args, **kwargs):
        obj = self.get_object()
        expected = if_match(request)
        try:
            self.remove(actor(request), obj, expected_version=expected)
        except versions.StaleEdit as exc:
            return stale(exc, self.current(obj.pk), self.serializer_class)
        return Response(status=204)


# --- clusters ----------------------------------------------------------------------------------------


@extend_schema(parameters=views.CLUSTER_FILTERS.parameters(),
               responses={200: ClusterSerializer(many=True), **problems(422)}, methods=["GET"])
@extend_schema(request=ClusterSerializer, responses={201: ClusterSerializer, **problems(422)}, methods=["POST"])
class ClusterList(views.ClusterList):
    write_scope = ADMIN

    def post(self, request, *args, **kwargs):
        data = _valid(ClusterSerializer(data=json_object(request)))
        cluster = _cluster(services.create_cluster(actor(request), **data).pk)
        return with_etag(ClusterSerializer(cluster).data, cluster, status=201,
                         headers={"Location": reverse("api:cluster", args=[cluster.name])})


@extend_schema(responses={200: ClusterSerializer, **problems(404)}, methods=["GET"])
@extend_schema(parameters=[IF_MATCH], request=ClusterSerializer,
               responses={200: ClusterSerializer, **problems(404, 409, 422, 428)}, methods=["PATCH"])
@extend_schema(parameters=[IF_MATCH], responses={204: None, **problems(404, 409, 422, 428)}, methods=["DELETE"])
class ClusterDetail(VersionedWrites, views.ClusterDetail):
    current = staticmethod(_cluster)
    change = staticmethod(services.update_cluster)
    remove = staticmethod(services.delete_cluster)


# --- balancers ---------------------------------------------------------------------------------------


@extend_schema(parameters=views.BALANCER_FILTERS.parameters(),
               responses={200: BalancerSerializer(many=True), **problems(422)}, methods=["GET"])
@extend_schema(request=BalancerSerializer, responses={201: NewBalancerSerializer, **problems(422)}, methods=["POST"])
class BalancerList(views.BalancerList):
    write_scope = ADMIN

    def post(self, request, *args, **kwargs):
        data = _valid(BalancerSerializer(data=json_object(request)))
        cluster = data.pop("cluster", None)
        if cluster is None:
            raise exceptions.ValidationError({"cluster": ["required: the cluster it belongs to"]})
        balancer, token = services.create_balancer_to_enrol(actor(request), cluster, **data)
        balancer = _balancer(balancer.pk)
        balancer.enrolment_token = token
        return with_etag(NewBalancerSerializer(balancer).data, balancer, status=201,
                         headers={"Location": reverse("api:balancer", args=[balancer.name])})


@extend_schema(responses={200: BalancerSerializer, **problems(404)}, methods=["GET"])
@extend_schema(parameters=[IF_MATCH], request=BalancerSerializer,
               responses={200: BalancerSerializer, **problems(404, 409, 422, 428)}, methods=["PATCH"])
@extend_schema(parameters=[IF_MATCH], responses={204: None, **problems(404, 409, 422, 428)}, methods=["DELETE"])
class BalancerDetail(VersionedWrites, views.BalancerDetail):
    current = staticmethod(_balancer)
    change = staticmethod(services.update_balancer)
    remove = staticmethod(services.delete_balancer)


class BalancerAction(views.Endpoint, generics.GenericAPIView):
    """A POST/PUT/DELETE on a balancer's agent credentials (admin), no body to version: not its form's fields."""

    read_scope = ADMIN
    write_scope = ADMIN
    lookup_field = "name"

    def get_queryset(self):
        return Balancer.objects.select_related("cluster")


@extend_schema(request=None, responses={201: EnrolmentTokenSerializer, **problems(404)})
class EnrolmentToken(BalancerAction):
    serializer_class = EnrolmentTokenSerializer

    def post(self, request, *args, **kwargs):
        """A new one-time enrolment token for the balancer's agent (the previous one stops working), shown once."""
        balancer = self.get_object()
        token = services.issue_enrolment_token(actor(request), balancer)
        balancer.refresh_from_db(fields=["enrol_token_expires"])
        return Response(EnrolmentTokenSerializer({"balancer": balancer.name, "enrolment_token": token,
                                                  "expires": balancer.enrol_token_expires}).data, status=201)


@extend_schema(request=BalancerKeySerializer, responses={200: BalancerSerializer, **problems(404, 422)},
               methods=["PUT"])
@extend_schema(request=None, responses={200: BalancerSerializer, **problems(404)}, methods=["DELETE"])
class BalancerKey(BalancerAction):
    serializer_class = BalancerKeySerializer

    def put(self, request, *args, **kwargs):
        """Enrol or re-key: only what this key signs is believed from the balancer from now on."""
        balancer = self.get_object()
        data = _valid(BalancerKeySerializer(data=json_object(request)))
        services.set_balancer_key(actor(request), balancer, public_key=data["public_key"])
        return Response(BalancerSerializer(_balancer(balancer.pk)).data)

    def delete(self, request, *args, **kwargs):
        """Revoke the agent's key: nothing more is believed from it until it is re-keyed."""
        balancer = self.get_object()
        services.revoke_balancer_key(actor(request), balancer)
        return Response(BalancerSerializer(_balancer(balancer.pk)).data)
