"""Every write about backups: storing what an agent sent, retention, schedules, upload, restore. Audited."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from lvsadmin.audit.log import Actor, current_head, record
from lvsadmin.core import services as core_services
from lvsadmin.core import trust, versions
from lvsadmin.core.models import Balancer, Cluster
from lvsadmin.ipvs import codec
from lvsadmin.ipvs.backup import DOCUMENT_FORMAT, make_document, shape_error
from lvsadmin.ipvs.model import Table
from lvsadmin.protocol import BACKUP_REQUEST_TASK, CONTROL_QUEUE, BackupRequest

from . import limits
from .models import Backup, BackupPolicy, MissedBackup, sha256_hex

SCHEDULED_TASK = "lvsadmin.backups.scheduled_backup"


class CorruptBackup(Exception):
    """A stored backup that does not match its hash or does not parse: never restored or served."""


def _counts(table: Table) -> tuple[int, int]:
    return len(table.services), sum(len(s.destinations) for s in table.services)


@transaction.atomic
def store_backup(actor: Actor, balancer: Balancer, *, text: str, document: str, trigger: str,
                 taken_at: datetime | None = None, note: str = "") -> Backup:
    """Keep what an agent sent (or an upload), after checking the JSON is a table; then apply retention."""
    table = parse_document(document)
    services, destinations = _counts(table)
    backup = Backup.objects.create(
        balancer=balancer,
        taken_at=taken_at or timezone.now(),
        trigger=trigger,
        text=text,
        document=document,
        text_sha256=sha256_hex(text),
        document_sha256=sha256_hex(document),
        size=len(text.encode()) + len(document.encode()),
        service_count=services,
        destination_count=destinations,
        ipvs_version=table.info.version if table.info else "",
        created_by=actor.username,
        note=note[:255],
        # A witness of the audit log: it held this many records, the newest with this hash, when this was stored.
        audit_sequence=(head := current_head())["sequence"],
        audit_hash=head["hash"],
    )
    record(actor, "backup", backup, object_type="backup", object_repr=str(backup), cluster=balancer.cluster,
           after={"balancer": balancer.name, "trigger": trigger, "sha256": backup.sha256, "services": services,
                  "real_servers": destinations})
    policy = policy_for(balancer)
    if policy is not None:
        apply_retention(actor, balancer, policy)
    return backup


def parse_document(document: str) -> Table:
    try:
        data = json.loads(document)
        if data.get("format") != DOCUMENT_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        table = codec.table_from_dict(data)
        problem = shape_error(table)
        if problem:
            raise ValueError(problem)
        return table
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:  # Recursion: nested too deep
        raise CorruptBackup(f"the backup's JSON does not describe a table: {exc}") from None


def verified_table(backup: Backup) -> Table:
    """The backup's table, after checking both hashes and that both forms parse. Raises CorruptBackup."""
    from lvsadmin.ipvs import rules

    if sha256_hex(backup.text) != backup.text_sha256:
        raise CorruptBackup(f"backup {backup.pk}: its ipvsadm text does not match its SHA-256 (changed or truncated)")
    if sha256_hex(backup.document) != backup.document_sha256:
        raise CorruptBackup(f"backup {backup.pk}: its JSON does not match its SHA-256 (changed or truncated)")
    table = parse_document(backup.document)
    if backup.trigger == Backup.Trigger.UPLOADED:
        # Kept as uploaded, host names and all: it parsed on upload and its hash says it is unchanged; parsing it
        # again would ask DNS on every look (and fail when a name moved on).
        return table
    try:
        rules.parse_save(backup.text, strict=False)  # a kernel may hold what the panel would not create
    except rules.ParseError as exc:
        raise CorruptBackup(f"backup {backup.pk}: its ipvsadm text does not parse: {exc}") from None
    return table


def policy_for(balancer: Balancer) -> BackupPolicy | None:
    """The balancer's own policy, or else its cluster's."""
    return (BackupPolicy.objects.filter(balancer=balancer).first()
            or BackupPolicy.objects.filter(cluster_id=balancer.cluster_id).first())


def apply_retention(actor: Actor, balancer: Balancer, policy: BackupPolicy, now: datetime | None = None) -> int:
    """Delete what the policy does not keep: keep the last N and/or those younger than D days; never the newest."""
    if policy.keep_last is None and policy.keep_days is None:
        return 0
    now = now or timezone.now()
    keep_last, cutoff = limits.retention_count(policy.keep_last), limits.retention_cutoff(now, policy.keep_days)
    backups = list(Backup.objects.filter(balancer=balancer).order_by("-taken_at", "-id").values_list("id", "taken_at"))
    doomed = []
    for index, (backup_id, taken_at) in enumerate(backups):
        if index == 0:
            continue  # the newest always stays
        too_many = keep_last is not None and index >= keep_last
        too_old = cutoff is not None and taken_at < cutoff
        if too_many or too_old:
            doomed.append(backup_id)
    if doomed:
        Backup.objects.filter(id__in=doomed).delete()
        record(actor, "delete", object_type="backup", object_repr=f"{len(doomed)} backups of {balancer.name}",
               cluster=balancer.cluster, before={"ids": doomed},
               comment=f"retention: keep last {policy.keep_last}, keep {policy.keep_days} days")
    return len(doomed)


# --- requesting backups from agents ---------------------------------------------------------------


def send_backup_request(balancer: Balancer, trigger: str, requested_by: str) -> None:
    request = BackupRequest(balancer=balancer.name, trigger=trigger, requested_by=requested_by,
                            audit_head=current_head())
    trust.send_to_agent(balancer, BACKUP_REQUEST_TASK, request.to_dict(), lineage=balancer.cluster.lineage)


def request_backup(actor: Actor, balancer: Balancer, trigger: str = Backup.Trigger.MANUAL) -> None:
    """Ask the balancer's agent for a backup (after commit); it arrives through the control queue."""
    name = balancer.name
    transaction.on_commit(lambda: send_backup_request(Balancer.objects.get(name=name), trigger, actor.username))


@transaction.atomic
def take_backup(actor: Actor, balancer: Balancer) -> int | None:
    """Someone asks for a backup now (the panel's button, the API): audited as asked, then requested from the
    agent. Returns the id of the balancer's newest backup so far: the one asked for will be newer."""
    newest = Backup.objects.filter(balancer=balancer).order_by("-id").values_list("id", flat=True).first()
    record(actor, "backup", balancer, cluster=balancer.cluster, after={"requested": Backup.Trigger.MANUAL})
    request_backup(actor, balancer)
    return newest


@transaction.atomic
def run_scheduled(policy: BackupPolicy, now: datetime | None = None) -> tuple[int, int]:
    """Due time of a schedule: request a backup from each online balancer, record a miss for each offline one."""
    now = now or timezone.now()
    sent = missed = 0
    for balancer in policy.balancers():
        if not balancer.is_offline(now):
            request_backup(Actor.system("scheduler"), balancer, Backup.Trigger.SCHEDULED)
            sent += 1
        else:
            seen = f"last seen {balancer.last_seen:%Y-%m-%d %H:%M:%S} UTC" if balancer.last_seen else "never seen"
            MissedBackup.objects.create(balancer=balancer, due_at=now, reason=f"balancer offline ({seen})")
            missed += 1
    return sent, missed


# --- schedules ----------------------------------------------------------------------------------------


@transaction.atomic
def set_policy(actor: Actor, *, cluster: Cluster | None = None, balancer: Balancer | None = None,
               crontab: str = "", every_seconds: int | None = None, enabled: bool = True,
               keep_last: int | None = None, keep_days: int | None = None,
               expected_version: str | None = None) -> BackupPolicy:
    """Create or change the backup schedule and retention of a balancer or a whole cluster."""
    if (cluster is None) == (balancer is None):
        raise ValidationError("A backup schedule is for one balancer or for one cluster.")
    if bool(crontab.strip()) == bool(every_seconds):
        raise ValidationError({"crontab": ["Give either a crontab or an interval."]})
    _check_numbers(keep_last=keep_last, keep_days=keep_days, every_seconds=None if crontab.strip() else every_seconds)
    policy = BackupPolicy.objects.select_for_update().filter(cluster=cluster, balancer=balancer).first()
    before = _policy_snapshot(policy) if policy else None
    versions.check(expected_version, before, object_type="backuppolicy", object_id=policy.pk if policy else None)
    if policy is None:
        policy = BackupPolicy.objects.create(cluster=cluster, balancer=balancer)
    policy.keep_last, policy.keep_days = keep_last, keep_days
    task = policy.periodic_task or PeriodicTask(name=f"backup {policy.scope_label} #{policy.pk}", task=SCHEDULED_TASK)
    task.crontab = task.interval = None
    if crontab.strip():
        task.crontab = _crontab(crontab)
    else:
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period=IntervalSchedule.SECONDS)
    task.kwargs = json.dumps({"policy_id": policy.pk})
    task.enabled = enabled
    task.queue = CONTROL_QUEUE
    task.save()
    policy.periodic_task = task
    policy.save()
    record(actor, "update" if before else "create", policy, object_type="backuppolicy",
           object_repr=str(policy), cluster=cluster or balancer.cluster, before=before,
           after=_policy_snapshot(policy))
    return policy


def policy_version(policy: BackupPolicy | None) -> str:
    """The version a schedule form carries (None: no schedule yet, so a schedule made meanwhile is a change)."""
    return versions.version(_policy_snapshot(policy) if policy else None)


def _check_numbers(**numbers) -> None:
    """Every number given (not None) in its range (limits.py), all errors at once, named by field."""
    errors = {}
    for field, value in numbers.items():
        if value is not None:
            try:
                limits.check(field, value)
            except ValidationError as exc:
                errors[field] = exc.messages
    if errors:
        raise ValidationError(errors)


def _crontab(text: str) -> CrontabSchedule:
    parts = text.split()
    if len(parts) != 5:
        raise ValidationError({"crontab": ["A crontab has five fields: minute hour day-of-month month day-of-week."]})
    minute, hour, dom, month, dow = parts
    schedule = CrontabSchedule(minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow,
                               timezone="UTC")
    try:
        schedule.full_clean(exclude=["timezone"])
    except ValidationError as exc:
        raise ValidationError({"crontab": [f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()]}) from None
    existing = CrontabSchedule.objects.filter(minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                                              day_of_week=dow).first()
    if existing:
        return existing
    schedule.save()
    return schedule


def _policy_snapshot(policy: BackupPolicy) -> dict:
    task = policy.periodic_task
    schedule = ""
    if task is not None:
        if task.crontab_id:
            c = task.crontab
            schedule = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
        elif task.interval_id:
            schedule = f"every {task.interval.every} {task.interval.period}"
    return {"scope": policy.scope_label, "schedule": schedule, "enabled": bool(task and task.enabled),
            "keep_last": policy.keep_last, "keep_days": policy.keep_days}


@transaction.atomic
def delete_policy(actor: Actor, policy: BackupPolicy, *, expected_version: str | None = None) -> None:
    policy = BackupPolicy.objects.select_for_update().get(pk=policy.pk)
    versions.check(expected_version, _policy_snapshot(policy), object_type="backuppolicy", object_id=policy.pk)
    record(actor, "delete", policy, object_type="backuppolicy", object_repr=str(policy),
           cluster=policy.cluster or policy.balancer.cluster, before=_policy_snapshot(policy))
    if policy.periodic_task:
        policy.periodic_task.delete()
    policy.delete()


# --- upload and restore -------------------------------------------------------------------------------


def text_of_file(raw: bytes) -> str:
    """An uploaded file's text exactly as it is, if it is UTF-8; else a ValidationError naming the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValidationError(f"line {line}: not UTF-8 text (byte {exc.start + 1} of the file)") from None
    _refuse_nul(text)
    return text


def _refuse_nul(text: str) -> None:
    # No ipvsadm text holds one, and PostgreSQL cannot store it (a 500 on commit).
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ValidationError(f"line {line}: a NUL byte; this is not ipvsadm text")


def upload_backup(actor: Actor, balancer: Balancer, text: str, resolver=None, note: str = "") -> Backup:
    """An `ipvsadm -S` file from elsewhere, kept as a backup of `balancer`: its text byte for byte (re-printing
    it would re-sort it, and ipvsadm's order is not a total order, so a real file came back reordered), its
    table as parsed (host names resolved now) in the JSON."""
    from lvsadmin.ipvs import rules

    _refuse_nul(text)
    kwargs = {"resolver": resolver} if resolver else {}
    try:
        # As ipvsadm -R would take it: a backup keeps what a kernel may hold (a restore validates it fully).
        table = rules.parse_save(text, strict=False, **kwargs)
    except rules.ParseError as exc:
        raise ValidationError(f"The file is not an ipvsadm save: {exc}") from None
    return store_backup(actor, balancer, text=text, document=make_document(table),
                        trigger=Backup.Trigger.UPLOADED, note=note or "uploaded")


@transaction.atomic
def restore_backup(actor: Actor, backup: Backup, *, apply: bool = True, comment: str = "",
                   reviewed_revision: int | None = None):
    """Make the backup the cluster's desired state (audited as a restore), after a fresh backup of each balancer.

    The pre-restore backups are queued before the apply, so each agent takes its backup first. With
    `reviewed_revision`, a desired state that moved on since the operator's preview raises StalePlan.
    """
    table = verified_table(backup)  # refuses a tampered or truncated backup before anything changes
    cluster = Cluster.objects.select_for_update().get(pk=backup.balancer.cluster_id)
    if reviewed_revision is not None and reviewed_revision != cluster.desired_revision:
        raise core_services.StalePlan(reviewed_revision, cluster.desired_revision)
    for balancer in cluster.balancers.all():
        request_backup(actor, balancer, Backup.Trigger.BEFORE_RESTORE)
    changes = core_services.replace_table(actor, cluster, table, action="restore",
                                          source=f"backup {backup.pk} of {backup.balancer.name} ({backup.sha256})")
    if apply:
        comment = comment or f"restore of backup {backup.pk}"
        core_services.apply_cluster(actor, cluster, changes.revision, comment=comment)
    return changes
