"""Backups: lists per balancer and per cluster, one backup, downloads, diffs, restore, upload and schedules.

Every write goes through `lvsadmin.backups.services`; a backup whose hashes do not match (or that does not
parse) is never served, diffed or restored: the page says so (HTTP 409) and nothing changes.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.backups import services as backups
from lvsadmin.backups.models import Backup, BackupPolicy
from lvsadmin.backups.selectors import backup_policy, missed_since_last_backup
from lvsadmin.core import services
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.core.selectors import desired_table

from ..backup_diff import table_diff
from ..forms_backups import RestoreForm, ScheduleForm, UploadBackupForm
from ..pages import redirect, render_page
from ..roles import ADMIN, OPERATOR, policy
from .common import actor, confirm_delete, form_round_trip, review_round_trip

PER_PAGE = 25
CHOICES_SHOWN = 200  # backups offered in the diff pickers


def _backup(pk) -> Backup:
    return get_object_or_404(Backup.objects.select_related("balancer__cluster"), pk=pk)


def _corrupt(request, backup: Backup, exc: Exception, doing: str):
    """The clear refusal for a backup that fails its hash check: 409, nothing served or changed."""
    context = {"backup": backup, "balancer": backup.balancer, "cluster": backup.balancer.cluster,
               "error": str(exc), "doing": doing}
    return render_page(request, "web/backup_corrupt.html", context, status=409)


def integrity(backup: Backup) -> str:
    """"" when both hashes match and both forms parse; otherwise why not."""
    try:
        backups.verified_table(backup)
    except backups.CorruptBackup as exc:
        return str(exc)
    return ""


# --- lists -------------------------------------------------------------------------------------------------


def _page(request, queryset):
    return Paginator(queryset.order_by("-taken_at", "-id"), PER_PAGE).get_page(request.GET.get("page") or 1)


@policy()
def balancer_backups(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    page = _page(request, Backup.objects.filter(balancer=balancer).select_related("balancer"))
    context = {"balancer": balancer, "cluster": balancer.cluster, "page_obj": page,
               "own_policy": backup_policy(balancer=balancer),
               "cluster_policy": backup_policy(cluster=balancer.cluster),
               "missed": list(missed_since_last_backup(balancer)[:20])}
    return render_page(request, "web/backups.html", context, fragments=("backups",))


@policy()
def cluster_backups(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    page = _page(request, Backup.objects.filter(balancer__cluster=cluster).select_related("balancer"))
    context = {"balancer": None, "cluster": cluster, "page_obj": page, "own_policy": None,
               "cluster_policy": backup_policy(cluster=cluster),
               "balancer_policies": list(BackupPolicy.objects.filter(balancer__cluster=cluster)
                                         .select_related("balancer", "periodic_task__crontab",
                                                         "periodic_task__interval")),
               "missed": []}
    return render_page(request, "web/backups.html", context, fragments=("backups",))


# --- one backup, its downloads ---------------------------------------------------------------------------


@policy()
def backup_detail(request, pk):
    backup = _backup(pk)
    others = (Backup.objects.filter(balancer__cluster=backup.balancer.cluster).exclude(pk=backup.pk)
              .select_related("balancer").order_by("-taken_at", "-id")[:CHOICES_SHOWN])
    context = {"backup": backup, "balancer": backup.balancer, "cluster": backup.balancer.cluster,
               "error": integrity(backup), "others": others}
    return render_page(request, "web/backup.html", context)


@policy()
def backup_download(request, pk, fmt):
    """The stored text or JSON byte for byte, after the hash check (a corrupt backup gets a 409 page)."""
    backup = _backup(pk)
    try:
        backups.verified_table(backup)
    except backups.CorruptBackup as exc:
        return _corrupt(request, backup, exc, "download")
    stamp = backup.taken_at.strftime("%Y%m%dT%H%M%SZ")
    if fmt == "json":
        body, content_type, ext = backup.document, "application/json", "json"
    else:
        body, content_type, ext = backup.text, "text/plain; charset=utf-8", "ipvsadm"
    response = HttpResponse(body.encode(), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{backup.balancer.name}-{stamp}-{backup.pk}.{ext}"'
    response["X-Backup-SHA256"] = backup.text_sha256 if ext == "ipvsadm" else backup.document_sha256
    return response


# --- diff ------------------------------------------------------------------------------------------------


def _side(value: str, other: Backup | None):
    """A backup (by id) or, for "desired", the desired state of the other side's cluster."""
    if value == "desired":
        if other is None:
            raise Http404("compare the desired state with a backup")
        return "desired", None
    try:
        return "backup", _backup(int(value))
    except (TypeError, ValueError):
        raise Http404("no such backup") from None


@policy()
def backup_diff(request):
    """`?a=<backup id>&b=<backup id or "desired">`: what turns A into B, object by object."""
    a_id, b_id = request.GET.get("a", ""), request.GET.get("b", "")
    choices = Backup.objects.select_related("balancer").order_by("-taken_at", "-id")[:CHOICES_SHOWN]
    context = {"choices": choices, "a_id": a_id, "b_id": b_id, "changes": None}
    if not a_id or not b_id or a_id == "desired":
        return render_page(request, "web/backup_diff.html", context)
    _, a = _side(a_id, None)
    kind, b = _side(b_id, a)
    cluster = a.balancer.cluster
    tables = []
    for backup in (a, b):
        if backup is None:
            tables.append(desired_table(cluster))
            continue
        try:
            tables.append(backups.verified_table(backup))
        except backups.CorruptBackup as exc:
            return _corrupt(request, backup, exc, "diff")
    context.update(a=a, b=b, cluster=cluster, balancer=a.balancer, changes=table_diff(*tables),
                   b_label=f"the desired state of {cluster.name} (revision {cluster.desired_revision})"
                   if b is None else f"backup {b.pk}: {b}")
    return render_page(request, "web/backup_diff.html", context)


# --- restore ---------------------------------------------------------------------------------------------


@policy(read=OPERATOR, write=OPERATOR)
def backup_restore(request, pk):
    """GET: what restoring would change in the desired state. POST: restore (a fresh backup first) and apply."""
    backup = _backup(pk)
    cluster = backup.balancer.cluster
    try:
        table = backups.verified_table(backup)
    except backups.CorruptBackup as exc:
        return _corrupt(request, backup, exc, "restore")

    def restore(data, shown):
        changes = backups.restore_backup(actor(request), backup, apply=True, comment=data.get("comment") or "",
                                         reviewed_revision=data["revision"])
        messages.success(request, f"Restored backup {backup.pk} of {backup.balancer.name}: {changes.summary()} "
                                  f"(revision {changes.revision}), sent to the balancers after a fresh backup of each.")

    context = {"backup": backup, "balancer": backup.balancer, "cluster": cluster, "changes": None,
               "balancers": list(cluster.balancers.order_by("name").values_list("name", flat=True))}
    try:
        return review_round_trip(
            request, cluster, RestoreForm(request.POST or None), commit=restore, confirm=request.method == "POST",
            preview=lambda data: {"changes": services.preview_table(cluster, table)},
            initial=lambda data: {"revision": cluster.desired_revision}, template="web/backup_restore.html",
            context=context, success_url=reverse("plan", args=[cluster.name]),
            missing="The preview's revision is missing: reload this page and confirm again.")
    except backups.CorruptBackup as exc:
        return _corrupt(request, backup, exc, "restore")


# --- upload ----------------------------------------------------------------------------------------------


@policy(read=OPERATOR, write=OPERATOR)
def backup_upload(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    form = UploadBackupForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            backup = backups.upload_backup(actor(request), balancer, form.cleaned_data["text"],
                                           note=form.cleaned_data.get("note") or "")
        except ValidationError as exc:
            form.add_error("text", exc.messages)
        else:
            messages.success(request, f"Stored the file as backup {backup.pk} of {balancer.name} "
                                      f"({backup.service_count} services, {backup.destination_count} real servers).")
            return redirect(request, reverse("backup", args=[backup.pk]))
    status = 422 if form.is_bound and form.errors else 200
    context = {"balancer": balancer, "cluster": balancer.cluster, "form": form}
    return render_page(request, "web/backup_upload.html", context, fragments=("form",), status=status)


# --- schedules (admin) -----------------------------------------------------------------------------------


def _schedule(request, *, cluster: Cluster | None = None, balancer: Balancer | None = None):
    existing = backup_policy(cluster=cluster, balancer=balancer)
    form = ScheduleForm(request.POST or None, initial=ScheduleForm.initial_for(existing),
                        version=backups.policy_version(existing))
    back = reverse("balancer", args=[balancer.name]) if balancer else reverse("cluster", args=[cluster.name])
    scope = f"balancer {balancer.name}" if balancer else f"cluster {cluster.name}"

    def save(data):
        return backups.set_policy(actor(request), cluster=cluster, balancer=balancer,
                                  crontab=data.get("crontab") or "", every_seconds=data.get("every_seconds"),
                                  enabled=bool(data.get("enabled")), keep_last=data.get("keep_last"),
                                  keep_days=data.get("keep_days"), expected_version=data["version"])

    context = {"cluster": cluster or balancer.cluster, "balancer": balancer, "existing": existing, "scope": scope,
               "cancel": back}
    return form_round_trip(request, form, save, template="web/backup_schedule.html", context=context,
                           success_url=back, success_message=f"Saved the backup schedule of {scope}.")


def _schedule_delete(request, *, cluster: Cluster | None = None, balancer: Balancer | None = None):
    existing = backup_policy(cluster=cluster, balancer=balancer)
    back = reverse("balancer", args=[balancer.name]) if balancer else reverse("cluster", args=[cluster.name])
    if existing is None:
        messages.info(request, "There is no backup schedule to delete.")
        return redirect(request, back)
    return confirm_delete(
        request, obj_label=f"the backup schedule of {existing.scope_label}",
        consequences=["no more scheduled backups are taken for it; backups already taken stay",
                      "its retention (keep last / keep days) no longer applies", "the deletion is audited"],
        delete=lambda version: backups.delete_policy(actor(request), existing, expected_version=version),
        version=backups.policy_version(existing), success_url=back, cancel_url=back)


@policy(read=ADMIN, write=ADMIN)
def balancer_schedule(request, name):
    return _schedule(request, balancer=get_object_or_404(Balancer.objects.select_related("cluster"), name=name))


@policy(read=ADMIN, write=ADMIN)
def balancer_schedule_delete(request, name):
    return _schedule_delete(request, balancer=get_object_or_404(Balancer, name=name))


@policy(read=ADMIN, write=ADMIN)
def cluster_schedule(request, name):
    return _schedule(request, cluster=get_object_or_404(Cluster, name=name))


@policy(read=ADMIN, write=ADMIN)
def cluster_schedule_delete(request, name):
    return _schedule_delete(request, cluster=get_object_or_404(Cluster, name=name))
