"""Dashboard, clusters (their services table with live counters) and balancers."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from lvsadmin.alerts.models import Incident
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups.models import Backup
from lvsadmin.backups.selectors import backup_policy, missed_by_balancer, missed_since_last_backup
from lvsadmin.core import latency, reports, services, trust, versions
from lvsadmin.core.models import ApplyReport, Balancer, Cluster, SecurityEvent, VirtualService
from lvsadmin.monitoring import charts
from lvsadmin.monitoring import selectors as health

from .. import live
from ..forms import BalancerForm, BalancerKeyForm, ClusterForm, ServiceFilterForm, edit_kwargs
from ..pages import fragment_name, redirect, render_page
from ..roles import ADMIN, OPERATOR, policy
from ..tables import KeysetPage, ServiceTable
from .common import actor, confirm_delete, form_round_trip

HISTORY_ROWS = 10
SECURITY_ROWS = 10


def _service_count():
    count = (VirtualService.objects.filter(cluster=OuterRef("pk")).order_by().values("cluster")
             .annotate(n=Count("pk")).values("n"))
    return Coalesce(Subquery(count, output_field=IntegerField()), 0)


def _last_backup():
    """The time of a balancer's newest backup, or None."""
    return Subquery(Backup.objects.filter(balancer=OuterRef("pk")).order_by("-taken_at").values("taken_at")[:1])


def _with_status(balancers, clusters_by_id):
    now = timezone.now()
    for b in balancers:
        cluster = clusters_by_id[b.cluster_id]
        b.cluster = cluster
        b.effective_status = live.effective_status(b, cluster.desired_revision, now)
    return balancers


def backup_info(cluster: Cluster, balancer: Balancer | None = None) -> dict:
    """What a cluster's or a balancer's backup panel shows (`{% backup_panel %}`): the schedules that apply and,
    for a balancer, the scheduled backups missed since its last one."""
    if balancer is None:
        return {"balancer": None, "cluster": cluster, "own_policy": None,
                "cluster_policy": backup_policy(cluster=cluster), "missed": []}
    return {"balancer": balancer, "cluster": cluster, "own_policy": backup_policy(balancer=balancer),
            "cluster_policy": backup_policy(cluster_id=balancer.cluster_id),
            "missed": list(missed_since_last_backup(balancer)[:5])}


@policy()
def dashboard(request):
    clusters = list(Cluster.objects.annotate(service_count=_service_count()))
    by_id = {c.pk: c for c in clusters}
    balancers = _with_status(list(Balancer.objects.order_by("name").annotate(last_backup=_last_backup())), by_id)
    for c in clusters:
        c.balancer_list = [b for b in balancers if b.cluster_id == c.pk]
    summary = {}
    for b in balancers:
        summary[b.effective_status] = summary.get(b.effective_status, 0) + 1
    context = {"clusters": clusters, "summary": sorted(summary.items()), "fleet": health.fleet_health(),
               "open_incidents": Incident.objects.filter(resolved_at=None).count()}
    fragment = fragment_name(request, ("clusters",))
    if fragment is None:
        context["missed_backups"] = missed_by_balancer()
        context["security_events"] = list(SecurityEvent.objects.select_related("balancer")[:SECURITY_ROWS])
    return render_page(request, "web/dashboard.html", context, fragments=("clusters",), fragment=fragment)


def _history(object_type: str, object_id: int):
    records = ChangeRecord.objects.filter(object_type=object_type, object_id=object_id).order_by("-id")
    return list(records[:HISTORY_ROWS])


@policy()
def cluster_detail(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    form = ServiceFilterForm(request.GET)
    table = ServiceTable(cluster, form)
    table.page()
    counters = table.counters()
    context = {"cluster": cluster, "form": form, "table": table, "counters": counters,
               "totals": live.cluster_totals(counters), "oob": False,
               "service_health": health.service_health(cluster.pk, table.rows)}
    fragments = ("services", "counters", "charts")
    fragment = fragment_name(request, fragments)
    if fragment in (None, "charts"):  # not for the 5-second counters poll
        context["traffic"] = charts.for_cluster(cluster, request.GET.get("range"))
    if fragment == "counters":
        context["oob"] = True
    else:
        balancers = list(Balancer.objects.filter(cluster=cluster).order_by("name"))
        context["balancers"] = _with_status(balancers, {cluster.pk: cluster})
        applies = latency.summaries([b.pk for b in balancers])  # one query, whatever the fleet
        for b in balancers:
            b.latency = applies.get(b.pk)
        # Agents ahead of the panel or of another lineage: an admin may take them back (tables.take_back).
        context["taken_elsewhere"] = any(b.applied_revision > cluster.desired_revision
                                         or b.status_detail.startswith(reports.AHEAD_PREFIXES) for b in balancers)
    if fragment is None:
        context["backup_info"] = backup_info(cluster)
    return render_page(request, "web/cluster.html", context, fragments=fragments, fragment=fragment,
                       status=charts.status(context))


@policy(read=ADMIN, write=ADMIN)
def cluster_create(request):
    form = ClusterForm(request.POST or None)
    return form_round_trip(
        request, form, lambda data: services.create_cluster(actor(request), **data),
        template="web/cluster_form.html", context={"cluster": None},
        success_url=lambda c: reverse("cluster", args=[c.name]), success_message=lambda c: f"Created cluster {c}.")


@policy(read=ADMIN, write=ADMIN)
def cluster_edit(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    form = ClusterForm(request.POST or None, instance=cluster)
    return form_round_trip(
        request, form, lambda data: services.update_cluster(actor(request), cluster, **edit_kwargs(data)),
        template="web/cluster_form.html", context={"cluster": cluster, "history": _history("cluster", cluster.pk)},
        success_url=lambda c: reverse("cluster", args=[c.name]), success_message=lambda c: f"Saved cluster {c}.")


@policy(read=ADMIN, write=ADMIN)
def cluster_delete(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    n_services = cluster.services.count()
    n_balancers = cluster.balancers.count()
    blocked = (f"Cluster {cluster} still has {n_balancers} balancer(s): delete or move them first."
               if n_balancers else "")
    return confirm_delete(
        request, obj_label=f"cluster {cluster}",
        consequences=[f"its {n_services} virtual service(s) and their real servers are deleted from the desired "
                      "state", "the deletion is audited"],
        delete=lambda version: services.delete_cluster(actor(request), cluster, expected_version=version),
        version=versions.version_of(cluster), success_url=reverse("dashboard"),
        cancel_url=reverse("cluster", args=[cluster.name]), blocked=blocked)


@policy(read=ADMIN, write=ADMIN)
def balancer_create(request, name):
    cluster = get_object_or_404(Cluster, name=name)
    form = BalancerForm(request.POST or None, initial={"cluster": cluster})

    def save(data):
        data = dict(data)
        return services.create_balancer(actor(request), data.pop("cluster") or cluster, **data)

    return form_round_trip(
        request, form, save, template="web/balancer_form.html", context={"cluster": cluster, "balancer": None},
        success_url=lambda b: reverse("balancer", args=[b.name]), success_message=lambda b: f"Added balancer {b}.")


@policy(read=ADMIN, write=ADMIN)
def balancer_edit(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    form = BalancerForm(request.POST or None, instance=balancer)
    return form_round_trip(
        request, form, lambda data: services.update_balancer(actor(request), balancer, **edit_kwargs(data)),
        template="web/balancer_form.html", context={"cluster": balancer.cluster, "balancer": balancer},
        success_url=lambda b: reverse("balancer", args=[b.name]), success_message=lambda b: f"Saved balancer {b}.")


@policy(read=ADMIN, write=ADMIN)
def balancer_delete(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    # Backups are kept (their foreign key protects the balancer): refuse up front rather than fail on delete.
    n_backups = balancer.backups.count()
    blocked = (f"Balancer {balancer} has {n_backups} backup(s), which are kept: it cannot be deleted."
               if n_backups else "")
    return confirm_delete(
        request, obj_label=f"balancer {balancer}", blocked=blocked,
        consequences=["the panel forgets it and its reports; its kernel table is left as it is",
                      f"its agent (queue {balancer.queue}) gets no more snapshots"],
        delete=lambda version: services.delete_balancer(actor(request), balancer, expected_version=version),
        version=versions.version_of(balancer),
        success_url=reverse("cluster", args=[balancer.cluster.name]),
        cancel_url=reverse("balancer", args=[balancer.name]))


@policy()
def balancer_detail(request, name):
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    cluster = balancer.cluster
    balancer.effective_status = live.effective_status(balancer, cluster.desired_revision)
    before, after = _int(request.GET.get("before")), _int(request.GET.get("after"))
    reports = KeysetPage.of(ApplyReport.objects.filter(balancer=balancer), 20, before, after)
    latest = reports.rows[0] if reports.first and reports.rows else (
        ApplyReport.objects.filter(balancer=balancer).order_by("-id").first())
    backups = list(Backup.objects.filter(balancer=balancer).order_by("-taken_at", "-id")[:5])
    context = {"balancer": balancer, "cluster": cluster, "reports": reports, "latest": latest,
               "facts": balancer.facts or {}, "history": _history("balancer", balancer.pk), "backups": backups,
               "security_events": list(balancer.security_events.all()[:5]), "checker": health.checker(balancer),
               "previous_key_believed": trust.in_grace(balancer)}
    fragment = fragment_name(request, ("reports", "charts"))
    if fragment is None:
        context["backup_info"] = backup_info(cluster, balancer)
        context["latency"] = latency.summaries([balancer.pk]).get(balancer.pk)
    if fragment in (None, "charts"):
        context["traffic"] = charts.for_balancer(balancer, request.GET.get("range"))
    return render_page(request, "web/balancer.html", context, fragments=("reports", "charts"), fragment=fragment,
                       status=charts.status(context))


def _int(value):
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@policy(read=OPERATOR, write=OPERATOR, methods=("POST",))
def balancer_backup(request, name):
    """Ask the balancer's agent for a backup of its kernel table now (it arrives, audited, when taken)."""
    balancer = get_object_or_404(Balancer, name=name)
    from lvsadmin.backups.services import take_backup

    take_backup(actor(request), balancer)
    messages.success(request, f"Backup of {balancer} requested from its agent; it is listed here once taken.")
    return redirect(request, reverse("balancer", args=[balancer.name]))


@policy(read=ADMIN, write=ADMIN)
def balancer_key(request, name):
    """Re-key (or enrol) a balancer: the key its agent signs with from now on (audited)."""
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    form = BalancerKeyForm(request.POST or None, initial={"public_key": balancer.public_key})
    return form_round_trip(
        request, form,
        lambda data: services.set_balancer_key(actor(request), balancer, public_key=data["public_key"]),
        template="web/balancer_key.html", context={"cluster": balancer.cluster, "balancer": balancer},
        success_url=lambda b: reverse("balancer", args=[b.name]),
        success_message=lambda b: f"Balancer {b}'s agent key is {b.key_fingerprint}.")


@policy(read=ADMIN, write=ADMIN, methods=("POST",))
def balancer_key_revoke(request, name):
    """Believe nothing more from the balancer's agent until it is re-keyed (audited)."""
    balancer = get_object_or_404(Balancer, name=name)
    services.revoke_balancer_key(actor(request), balancer)
    messages.success(request, f"Balancer {balancer}'s agent key is revoked: its reports are refused until re-keyed.")
    return redirect(request, reverse("balancer", args=[balancer.name]))
