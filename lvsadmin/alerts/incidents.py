"""Incidents: what fires becomes one incident per key, told once when it opens and once when it resolves.

`step` is the whole state machine, pure (a fake clock in the tests); `evaluate` runs it over the database:

- a key that fires with no incident, or only one resolved longer ago than ALERT_FLAP_WINDOW_SECONDS: a new
  incident, told "firing";
- a key that stops firing: the incident resolves, told "resolved" — when "firing" is what was last told;
- a key that fires again within the flap window of resolving: the same incident reopens, silently (flaps + 1). A
  server flapping at 1 Hz for a minute is told firing once and resolved once. Were it still down a whole window
  later, the channels are told "firing" again (they last heard "resolved");
- an open incident whose channels last heard "firing" ALERT_REPEAT_SECONDS ago: told again.

The notifications of one evaluation are grouped per channel into one message (Alertmanager's group), each
channel's message one delivery task of its own (delivery.py, tasks.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import rules
from .models import Evaluation, Incident

FIRING, RESOLVED = Incident.FIRING, Incident.RESOLVED


@dataclass(frozen=True)
class Timing:
    flap_window: timedelta
    repeat: timedelta

    @classmethod
    def from_settings(cls) -> Timing:
        return cls(timedelta(seconds=settings.ALERT_FLAP_WINDOW_SECONDS),
                   timedelta(seconds=settings.ALERT_REPEAT_SECONDS))


def step(incident: Incident, fires: bool, now: datetime, timing: Timing) -> str | None:
    """Move an existing incident on by one evaluation (`fires`: its key fires now); returns what to tell the
    channels ("firing", "resolved") or None. The caller saves it."""
    if fires and incident.resolved_at is not None:
        incident.resolved_at, incident.firing_since = None, now
        incident.flaps += 1
        return None  # the window was checked by the caller: a reopening is silent
    if not fires:
        if incident.resolved_at is None:
            incident.resolved_at = now
            if incident.notified == FIRING:
                return _told(incident, RESOLVED, now)
        return None
    if incident.notified == FIRING and now - incident.last_notified_at >= timing.repeat:
        return _told(incident, FIRING, now)  # the repeat interval
    if incident.notified != FIRING and now - incident.firing_since >= timing.flap_window:
        return _told(incident, FIRING, now)  # back for good after the channels heard it resolved
    return None


def opened(firing: rules.Firing, now: datetime) -> Incident:
    incident = Incident(rule=firing.rule, key=key_text(firing.key), cluster=firing.cluster, summary=firing.summary,
                        opened_at=now, firing_since=now)
    _told(incident, FIRING, now)
    return incident


def _told(incident: Incident, status: str, now: datetime) -> str:
    incident.notified, incident.last_notified_at = status, now
    return status


def key_text(key: tuple) -> str:
    return json.dumps(list(key), separators=(",", ":"))


@dataclass(frozen=True)
class Notice:
    """One incident in one evaluation's notifications."""

    incident: Incident
    status: str

    def to_dict(self) -> dict:
        i = self.incident
        return {"id": i.pk, "status": self.status, "rule": i.rule, "cluster": i.cluster, "summary": i.summary,
                "opened_at": i.opened_at.isoformat(), "resolved_at": i.resolved_at.isoformat()
                if i.resolved_at and self.status == RESOLVED else None, "flaps": i.flaps}


def _current(keys: set[str], window_start: datetime) -> dict[str, Incident]:
    """The incident of each key that is open, or resolved within the flap window (the newest per key); and
    every open incident, to resolve those whose key no longer fires."""
    rows = Incident.objects.filter(resolved_at__isnull=True) | Incident.objects.filter(
        key__in=keys, resolved_at__gte=window_start)
    current: dict[str, Incident] = {}
    for incident in rows.order_by("id"):
        current[incident.key] = incident  # the newest wins
    return current


def _fields(incident: Incident) -> tuple:
    return (incident.summary, incident.resolved_at, incident.firing_since, incident.flaps, incident.notified,
            incident.last_notified_at)


@transaction.atomic
def evaluate(now: datetime | None = None, firing: dict[tuple, rules.Firing] | None = None,
             timing: Timing | None = None) -> list[Notice]:
    """One evaluation: every rule read now, incidents opened, reopened, repeated and resolved; returns what to
    tell the channels (alerts.services.notify groups it per channel, on commit)."""
    now = now or timezone.now()
    timing = timing or Timing.from_settings()
    # The first write: evaluations wait for each other here (a row lock; SQLite's write lock).
    if not Evaluation.objects.filter(id=1).update(at=now):
        Evaluation.objects.create(id=1, at=now)
    firing = rules.firing() if firing is None else firing
    by_text = {key_text(k): f for k, f in firing.items()}
    current = _current(set(by_text), now - timing.flap_window)
    notices: list[Notice] = []
    for text, incident in current.items():
        fires = by_text.get(text)
        before = _fields(incident)
        if fires is not None:
            incident.summary = fires.summary
        status = step(incident, fires is not None, now, timing)
        if _fields(incident) != before:  # most evaluations change nothing: no write
            incident.save()
        if status:
            notices.append(Notice(incident, status))
    for text, fires in by_text.items():
        if text not in current:
            incident = opened(fires, now)
            incident.save()
            notices.append(Notice(incident, FIRING))
    return notices
