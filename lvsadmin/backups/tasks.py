"""Control-side backup tasks (queue `control`): the schedule's due time, and storing what an agent sent."""

from celery import shared_task
from django.core.exceptions import ObjectDoesNotExist

from lvsadmin.audit import witness
from lvsadmin.audit.log import Actor
from lvsadmin.core import trust
from lvsadmin.core.models import Balancer
from lvsadmin.protocol import BACKUP_RESULT_TASK, BackupResult

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


@shared_task(name=BACKUP_RESULT_TASK)
def record_backup(message: dict) -> int | None:
    """What the agent sent for a backup request (protocol.BackupResult)."""
    from django.utils.dateparse import parse_datetime

    body = trust.accept(BACKUP_RESULT_TASK, message)  # signed by the balancer it names, or dropped and recorded
    if body is None:
        return None
    result = BackupResult.from_dict(body)
    balancer = Balancer.objects.select_related("cluster").filter(name=result.balancer).first()
    if balancer is None:
        return None
    actor = Actor.system(f"agent:{balancer.name}", comment=f"requested by {result.requested_by}")
    backup = services.store_backup(
        actor, balancer, text=result.text, document=result.document, trigger=result.trigger,
        taken_at=parse_datetime(result.taken_at) if result.taken_at else None,
    )
    witness.saw(f"balancer {balancer.name}", result.audit_head)
    return backup.pk
