"""Health reports written down on the control side (the control worker runs these; web pages only read).

- `record_health(body)`: a `HealthReport` (HEALTH_TASK, its signature checked already): every transition becomes
  a HealthEvent, and is applied to the balancer's live state at once, so the pages show it before the next
  heartbeat. An entry that is not a transition (a wrong type, an address that is none, a state that is no word)
  is skipped and counted, never a crash: a newer or a broken agent must not stop the others' reports.
- `record_health_state(balancer, health)`: the heartbeat's whole health state (protocol.HealthState) as it came;
  None (an agent that checks nothing) forgets the balancer's state.
- `prune` (periodic, and after every report now and then): events older than HEALTH_EVENT_RETENTION_DAYS, and
  all but the newest HEALTH_EVENT_MAX_ROWS.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import UTC, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from lvsadmin.core.models import Balancer, VirtualService
from lvsadmin.core.schedules import ensure_interval_task
from lvsadmin.ipvs.model import hostport
from lvsadmin.protocol import HealthReport

from .models import BalancerHealth, HealthEvent

log = logging.getLogger(__name__)

HEALTH_EVENT_MAX_ROWS = 100_000
MAX_TRANSITIONS = 10_000  # of one report: a whole 10,000-server table going down at once is the most there is
PRUNE_TASK = "lvsadmin.monitoring.prune_health_events"
PRUNE_TASK_NAME = "lvsadmin: prune health events"
PRUNE_EVERY_SECONDS = 3600
_STATE = re.compile(r"[a-z][a-z_-]{0,15}")  # "up", "down", "ok", "lost", or a word a newer agent may add
_SERVICE_KEY = re.compile(r"[a-z0-9.:|]{1,80}")


def server_label(server: str) -> str | None:
    """ADDRESS:PORT of a server text (`address|port`), None when it is not one."""
    address, sep, port = server.rpartition("|")
    try:
        ip = ipaddress.ip_address(address)
        number = int(port)
    except ValueError:
        return None
    if not sep or not port.isdigit() or not 0 <= number <= 65535:
        return None
    return hostport(ip.compressed, number)


def _at(value, now):
    if value is None:
        return now
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        return None
    return timezone.make_aware(parsed, UTC) if timezone.is_naive(parsed) else parsed


def _event(raw: dict, balancer: Balancer, labels: dict, now) -> HealthEvent | None:
    """A HealthEvent of one transition as an agent sent it; None when it is not one."""
    service, server = raw.get("service"), raw.get("server") or ""
    from_state, to_state, reason = raw.get("from"), raw.get("to"), raw.get("reason") or ""
    if not isinstance(service, str) or not _SERVICE_KEY.fullmatch(service) or not isinstance(server, str):
        return None
    if not all(isinstance(s, str) and _STATE.fullmatch(s) for s in (from_state, to_state)):
        return None
    label = server_label(server) if server else ""
    at = _at(raw.get("at"), now)
    if label is None or at is None or not isinstance(reason, str):
        return None
    return HealthEvent(at=at, balancer=balancer, balancer_name=balancer.name, cluster_id=balancer.cluster_id,
                       service=service, service_label=labels.get(service, service)[:100], server=server[:80],
                       server_label=label[:100], from_state=from_state, to_state=to_state, reason=reason[:200])


def service_labels(cluster_id: int) -> dict[str, str]:
    """The cluster's services' labels by key text."""
    services = VirtualService.objects.filter(cluster_id=cluster_id).only(
        "protocol", "address", "port", "fwmark", "family")
    return {svc.key_text: svc.label for svc in services}


@transaction.atomic
def record_health(body: dict) -> int:
    """Write down the transitions of one HealthReport; returns how many became events."""
    report = HealthReport.from_dict(body if isinstance(body, dict) else None)
    balancer = Balancer.objects.select_related("cluster").filter(name=report.balancer).first()
    if balancer is None:
        log.warning("health report from unknown balancer %r ignored", report.balancer)
        return 0
    if report.cluster not in (None, balancer.cluster.name):
        # The balancer moved to another cluster since: these are about a table it no longer carries.
        log.info("health report for cluster %s from %s, now in %s: ignored", report.cluster, balancer,
                 balancer.cluster)
        return 0
    now = timezone.now()
    labels = service_labels(balancer.cluster_id)
    events = [e for raw in report.transitions[:MAX_TRANSITIONS] if (e := _event(raw, balancer, labels, now))]
    skipped = len(report.transitions) - len(events)
    if skipped:
        log.warning("health report from %s: %d entr%s not a transition, skipped", balancer, skipped,
                    "y" if skipped == 1 else "ies")
    HealthEvent.objects.bulk_create(events, batch_size=1000)
    _apply_transitions(balancer, events, now)
    return len(events)


def _apply_transitions(balancer: Balancer, events: list[HealthEvent], now) -> None:
    """Bring the balancer's live state up to these transitions (its next heartbeat carries the whole of it)."""
    row = BalancerHealth.objects.select_for_update().filter(balancer=balancer).first()
    if row is None or not events:
        return
    state = row.state if isinstance(row.state, dict) else {}
    servers, services = state.setdefault("servers", {}), state.setdefault("services", {})
    for e in events:
        since = e.at.isoformat()
        if e.server:
            entry = servers.setdefault(e.service, {}).setdefault(e.server, {})
            if isinstance(entry, dict):
                # Held until the next heartbeat says more (a ramp, fail-open keeping it in).
                entry.update(state=e.to_state, since=since, reason=e.reason, checked=since,
                             held=e.to_state == "down")
                entry.pop("latency", None)  # of an older probe: the transition does not say this one's
        elif isinstance(status := services.setdefault(e.service, {}), dict):
            # Service-wide: quorum ok ↔ lost, ok ↔ fail-open (lvsadmin.health.overlay's events).
            if "lost" in (e.from_state, e.to_state):
                status["quorum"] = e.to_state if e.to_state in ("ok", "lost") else status.get("quorum")
            if "fail-open" in (e.from_state, e.to_state):
                status["fail_open"] = e.to_state == "fail-open"
    BalancerHealth.objects.filter(pk=row.pk).update(state=state, updated_at=now)


def record_health_state(balancer: Balancer, health: dict | None) -> None:
    """The heartbeat's health state as it came; None (the agent checks nothing, or is older) forgets it."""
    if health is None:
        BalancerHealth.objects.filter(balancer=balancer).delete()
        return
    BalancerHealth.objects.update_or_create(balancer=balancer,
                                            defaults={"state": health, "updated_at": timezone.now()})


def prune(now=None) -> int:
    """Drop events older than HEALTH_EVENT_RETENTION_DAYS and all but the newest HEALTH_EVENT_MAX_ROWS."""
    now = now or timezone.now()
    dropped, _ = HealthEvent.objects.filter(
        at__lt=now - timedelta(days=settings.HEALTH_EVENT_RETENTION_DAYS)).delete()
    oldest_kept = list(HealthEvent.objects.order_by("-id").values_list("id", flat=True)[
        HEALTH_EVENT_MAX_ROWS - 1:HEALTH_EVENT_MAX_ROWS])
    if oldest_kept:
        more, _ = HealthEvent.objects.filter(id__lt=oldest_kept[0]).delete()
        dropped += more
    return dropped


def ensure_periodic_tasks() -> list[str]:
    """The pruning job in django-celery-beat's tables (editable in the panel); made when missing."""
    made = ensure_interval_task(PRUNE_TASK_NAME, task=PRUNE_TASK, seconds=PRUNE_EVERY_SECONDS)
    return [PRUNE_TASK_NAME] if made else []
