"""Control-side backup tasks (queue `control`): the schedule's due time, and storing what an agent sent."""

from celery import shared_task
from django.core.exceptions import ObjectDoesNotExist

from lvsadmin.audit import witness
from lvsadmin.audit.log import Actor
from lvsadmin.core.models import Balancer

from . import services
from .models import BackupPolicy


@shared_task(name="lvsadmin.backups.scheduled_backup")
def scheduled_backup(policy_id: int) -> dict:
    try:
        policy = BackupPolicy.objects.get(pk=policy_id)
    except ObjectDoesNotExist:
        return {"sent": 0, "missed": 0, "error": f"no backup policy {policy_id}"}
    sent, missed = services.run_scheduled(policy)
    return {"sent": sent, "missed": missed}


@shared_task(name="lvsadmin.backups.record_backup")
def record_backup(payload: dict) -> int | None:
    """Payload from the agent: balancer, trigger, requested_by, taken_at, text, document."""
    from django.utils.dateparse import parse_datetime

    balancer = Balancer.objects.select_related("cluster").filter(name=payload["balancer"]).first()
    if balancer is None:
        return None
    actor = Actor.system(f"agent:{balancer.name}", comment=f"requested by {payload.get('requested_by', '?')}")
    backup = services.store_backup(
        actor, balancer, text=payload["text"], document=payload["document"], trigger=payload["trigger"],
        taken_at=parse_datetime(payload["taken_at"]) if payload.get("taken_at") else None,
    )
    witness.saw(f"balancer {balancer.name}", payload.get("audit_head"))
    return backup.pk
