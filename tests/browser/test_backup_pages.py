"""Backups in a real browser: an admin sets a schedule, backups appear, two are diffed, one is restored.

No agent runs in the browser tier. The scheduled task's function (`backups.services.run_scheduled`) is called
directly; the backup requests it queues (and the pre-restore ones) are captured by patching
`backups.services.send_backup_request`, and each captured request is answered as an agent would: with
`store_backup` of an `agent.capture.backup_payload` of the table that balancer carries. Applying goes through the
patched `dispatch.send_reconcile` of tests/browser/conftest.py (`sent`).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def requested(monkeypatch):
    """Backup requests that would have gone to the agents: (balancer, trigger)."""
    from lvsadmin.backups import services as backups

    calls = []
    monkeypatch.setattr(backups, "send_backup_request",
                        lambda balancer, trigger, requested_by: calls.append((balancer.name, trigger)))
    return calls


def answer(requests, table):
    """What the agents would send back for each request: a backup of `table` (their kernel table)."""
    from lvsadmin.agent.capture import backup_payload
    from lvsadmin.audit.log import Actor
    from lvsadmin.backups import services as backups
    from lvsadmin.core.models import Balancer

    stored = []
    for name, trigger in requests:
        payload = backup_payload(name, table, trigger)
        stored.append(backups.store_backup(Actor.system(f"agent {name}"), Balancer.objects.get(name=name),
                                           text=payload["text"], document=payload["document"], trigger=trigger))
    requests.clear()
    return stored


def test_an_admin_schedules_backups_diffs_two_and_restores_one(site, page, sign_in, shot, sent, requested,
                                                                settled):
    from lvsadmin.audit.log import Actor
    from lvsadmin.audit.models import ChangeRecord
    from lvsadmin.backups import services as backups
    from lvsadmin.backups.models import Backup, BackupPolicy
    from lvsadmin.core import services
    from lvsadmin.core.models import RealServer, VirtualService
    from lvsadmin.core.selectors import desired_table

    base, cluster = site["url"], site["cluster"]
    sign_in(page, base, "ada")

    # A schedule for lb1: a too-short interval is refused next to its field, then an hourly one is saved.
    page.goto(f"{base}/balancers/lb1/")
    page.click("text=Set a schedule")
    settled(page)
    page.fill("#id_every_seconds", "5")
    page.fill("#id_keep_last", "10")
    page.click("button:has-text('Save schedule')")
    expect(page.locator("#f-every_seconds .error")).to_contain_text("at most every 10 seconds")
    settled(page)
    page.fill("#id_every_seconds", "3600")
    page.click("button:has-text('Save schedule')")
    expect(page).to_have_url(f"{base}/balancers/lb1/")
    expect(page.locator(".backup-info")).to_contain_text("every 3600 s, keep the last 10")
    policy = BackupPolicy.objects.get(balancer__name="lb1")

    # The schedule fires (lb1 is online): the request is answered with the kernel table, as it is now.
    backups.run_scheduled(policy)
    assert requested == [("lb1", "scheduled")]
    (older,) = answer(requested, desired_table(cluster))

    # The table changes (a web service with two servers), and the next scheduled backup carries it.
    setup = Actor.system("setup")
    http = services.create_service(setup, cluster, protocol="tcp", address="10.0.0.80", port=80, scheduler="wrr",
                                   name="web")
    services.create_real_server(setup, http, address="192.0.2.81", port=80, weight=1)
    services.create_real_server(setup, http, address="192.0.2.82", port=80, weight=2)
    backups.run_scheduled(policy)
    (newer,) = answer(requested, desired_table(cluster))

    page.click("text=All backups")
    page.wait_for_url(f"{base}/balancers/lb1/backups/")
    rows = page.locator("tbody tr[id^=backup-]")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("scheduled")
    expect(page.locator(f"#backup-{newer.pk}")).to_contain_text("UTC")
    shot(page, "backups-list")

    # Diff: A is the older, B the newer (pre-selected); the new service and its servers show as added.
    expect(page.locator(f"#backup-{older.pk} input[name=a]")).to_be_checked()
    expect(page.locator(f"#backup-{newer.pk} input[name=b]")).to_be_checked()
    page.click("button:has-text('Diff A → B')")
    expect(page).to_have_url(re.compile(r"/backups/diff/\?(a=\d+&b=\d+|b=\d+&a=\d+)$"))
    diff = page.locator("section[aria-label=Differences]")
    expect(diff).to_contain_text("1 service created, 2 real servers created")
    expect(diff).to_contain_text("TCP 10.0.0.80:80 → 192.0.2.82:80")
    shot(page, "backups-diff")

    # One backup, then restore the older one: the page says what changes and that a backup comes first.
    page.click(f"section[aria-label=Differences] a[href='/backups/{older.pk}/']")
    expect(page.locator("h1")).to_contain_text(f"Backup {older.pk} of lb1")
    expect(page.locator(".badge.b-ok")).to_have_text("hash verified")
    expect(page.locator("pre")).to_contain_text("-A -u 10.0.0.53:53 -s rr")
    page.click("text=Restore…")
    expect(page.locator(".callout")).to_contain_text("A fresh backup is taken first")
    expect(page.locator("section[aria-label='What the restore changes']")).to_contain_text("1 service deleted")
    shot(page, "backups-restore")
    page.fill("#id_comment", "back to the resolver only")
    page.click("button:has-text('Restore and apply')")
    page.wait_for_url(f"{base}/clusters/web/plan/")
    expect(page.locator(".messages, [role=status], body").first).to_contain_text(f"Restored backup {older.pk}")

    assert not VirtualService.objects.filter(address="10.0.0.80").exists()
    assert not RealServer.objects.filter(address__startswith="192.0.2.8").exists()
    assert sorted(requested) == [("lb1", "before_restore"), ("lb2", "before_restore")]
    assert sent == [(cluster.pk, "apply")]
    assert ChangeRecord.objects.filter(action="restore", username="ada").exists()
    assert ChangeRecord.objects.filter(action="apply", comment="back to the resolver only").exists()
    # The pre-restore backups arrive from the agents and are listed.
    answer(requested, desired_table(cluster))
    assert Backup.objects.filter(trigger="before_restore").count() == 2
    page.goto(f"{base}/balancers/lb1/backups/")
    expect(page.locator("tbody tr[id^=backup-]")).to_have_count(3)
    expect(page.locator("tbody tr[id^=backup-]").first).to_contain_text("before a restore")
