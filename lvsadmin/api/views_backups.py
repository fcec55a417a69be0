"""Backups over the API: the list, one backup (JSON, or `?format=text` for its ipvsadm -S text as the panel's
download), taking one now, and a restore staged as the desired state, to be reviewed in the plan and applied.

The writes are the panel's service calls (lvsadmin.backups.services): `take_backup` as the page's button, and
`restore_backup` as the restore page but without its apply, which needs the `apply` scope (apply/). A backup
whose hashes do not match or that does not parse is never served nor restored: a 409 problem naming what is
wrong, and nothing is written.
"""

from __future__ import annotations

import json

from django.http import Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, renderers
from rest_framework.response import Response

from lvsadmin.backups import services as backups
from lvsadmin.backups.models import Backup
from lvsadmin.core import services
from lvsadmin.core.models import Balancer

from .problems import problem
from .serializers_records import BackupDetailSerializer, BackupSerializer
from .views import Endpoint, Filters, actor, problems

CORRUPT = "urn:lvsadmin:problem:corrupt-backup"
BACKUP_FILTERS = Filters(
    {"cluster": ("balancer__cluster__name", str), "balancer": ("balancer__name", str), "trigger": ("trigger", str)},
    {"taken_at": "taken_at", "balancer": "balancer__name", "size": "size", "id": "id"},
    ("-taken_at", "-id"))


class TextRenderer(renderers.BaseRenderer):
    """`?format=text` (or Accept: text/plain): the ipvsadm text; a problem still comes as JSON."""

    media_type, format, charset = "text/plain", "text", "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()


def corrupt(exc: backups.CorruptBackup) -> Response:
    return problem(409, str(exc), type=CORRUPT, title="Corrupt backup")


def backups_listed():
    # The list never shows the text nor the JSON: not read for it (a backup can be megabytes).
    return Backup.objects.select_related("balancer__cluster").defer("text", "document")


@extend_schema(parameters=BACKUP_FILTERS.parameters(), responses={200: BackupSerializer(many=True), **problems(422)})
class BackupList(Endpoint, generics.ListAPIView):
    """GET: backups, newest first, of every balancer or of a `cluster` or a `balancer`."""

    serializer_class = BackupSerializer
    list_filters = BACKUP_FILTERS

    def get_queryset(self):
        return backups_listed()


FORMAT = OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "text"],
                          description="text: the ipvsadm -S -n text alone, byte for byte, as the panel's download")


@extend_schema(parameters=[FORMAT], responses={(200, "application/json"): BackupDetailSerializer,
                                               (200, "text/plain"): OpenApiTypes.STR, **problems(404, 409, 422)})
class BackupDetail(Endpoint):
    """GET: one backup with its text and its JSON, after checking both against their hashes."""

    renderer_classes = [renderers.JSONRenderer, TextRenderer]

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # DRF's answer to an unknown ?format=, which would read as "no such backup"
            raise exceptions.ValidationError({"format": ["json or text"]}) from None

    def get(self, request, pk):
        backup = _backup(pk)
        try:
            backups.verified_table(backup)
        except backups.CorruptBackup as exc:
            return corrupt(exc)
        if request.accepted_renderer.format == "text":
            response = HttpResponse(backup.text.encode(), content_type="text/plain; charset=utf-8")
            response["X-Backup-SHA256"] = backup.text_sha256
            return response
        backup.document_object = json.loads(backup.document)
        return Response(BackupDetailSerializer(backup).data)


def _backup(pk: int) -> Backup:
    backup = Backup.objects.select_related("balancer__cluster").filter(pk=pk).first() if pk < 2**63 else None
    if backup is None:
        raise exceptions.NotFound(f"no backup {pk}")
    return backup


@extend_schema(request=None, responses={202: OpenApiTypes.OBJECT, **problems(404)})
class TakeBackup(Endpoint):
    """POST: ask the balancer's agent for a backup now (as the panel's button). It is listed once taken: poll
    `backups` for an id above `newest`."""

    write_scope = "write"

    def post(self, request, name):
        balancer = Balancer.objects.select_related("cluster").filter(name=name).first()
        if balancer is None:
            raise exceptions.NotFound(f"no balancer named {name!r}")
        newest = backups.take_backup(actor(request), balancer)
        listing = f"{reverse('api:backups')}?balancer={balancer.name}"
        return Response({"balancer": balancer.name, "requested": True, "newest": newest, "backups": listing,
                         "request_id": getattr(request, "request_id", None)},
                        status=202, headers={"Location": listing})


def _restore_body(request) -> dict:
    body = request.data
    if not isinstance(body, dict):
        raise exceptions.ValidationError({"non_field_errors": ["a JSON object: revision, dry_run"]})
    errors = {}
    dry_run, revision = body.get("dry_run", False), body.get("revision")
    if not isinstance(dry_run, bool):
        errors["dry_run"] = ["true or false"]
    elif not dry_run and (type(revision) is not int or revision < 0):
        errors["revision"] = ["required: the cluster's desired revision the restore is based on (a dry run says it)"]
    if errors:
        raise exceptions.ValidationError(errors)
    return body


def _changes(changes: services.TableChanges) -> list[dict]:
    return [{"action": c.action, "kind": c.kind, "label": c.label, "before": c.before, "after": c.after}
            for c in changes.changes]


@extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT, **problems(404, 409, 422)})
class Restore(Endpoint):
    """POST {"revision": N, "dry_run": false}: make the backup the cluster's desired state (after a
    fresh backup of each balancer), as the panel's restore, but not applied: review the plan, then apply (with its
    comment) through apply/, which needs the `apply` scope.

    `dry_run: true`: what it would change and the revision to send; nothing written. `revision`: the desired
    revision the restore is based on; 409 if the desired state moved on since.
    """

    write_scope = "write"

    def post(self, request, pk):
        backup = _backup(pk)
        body = _restore_body(request)
        cluster = backup.balancer.cluster
        try:
            if body.get("dry_run", False):
                preview = services.preview_table(cluster, backups.verified_table(backup))
                return Response({"dry_run": True, "revision": cluster.desired_revision,
                                 "summary": preview.summary(), "changes": _changes(preview)})
            changes = backups.restore_backup(actor(request), backup, apply=False, reviewed_revision=body["revision"])
        except backups.CorruptBackup as exc:
            return corrupt(exc)
        except services.StalePlan as exc:
            return problem(409, str(exc), revision=exc.current)
        return Response({"dry_run": False, "revision": changes.revision, "summary": changes.summary(),
                         "changes": _changes(changes), "plan": reverse("api:plan", args=[cluster.name]),
                         "apply": reverse("api:apply", args=[cluster.name])})
