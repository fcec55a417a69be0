"""Backups for scripts and cron users:

    manage.py backups take BALANCER [--wait SECONDS]   ask the agent for a backup now
    manage.py backups list [--balancer NAME]           newest first
    manage.py backups show ID [--json]                 the ipvsadm -S -n text (or the JSON), hash checked
    manage.py backups upload BALANCER FILE             keep an ipvsadm -S file as a backup of BALANCER
"""

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from lvsadmin.audit.log import Actor
from lvsadmin.backups import services
from lvsadmin.backups.models import Backup
from lvsadmin.core.models import Balancer


class Command(BaseCommand):
    help = "Take, list, print and upload backups of balancers' kernel tables."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        take = sub.add_parser("take", help="ask the balancer's agent for a backup now")
        take.add_argument("balancer")
        take.add_argument("--wait", type=float, default=0, help="wait this many seconds for it to arrive")
        listing = sub.add_parser("list", help="list backups, newest first")
        listing.add_argument("--balancer")
        listing.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="print a backup after checking its hash")
        show.add_argument("id", type=int)
        show.add_argument("--json", action="store_true")
        upload = sub.add_parser("upload", help="keep an ipvsadm -S file as a backup of a balancer")
        upload.add_argument("balancer")
        upload.add_argument("file")

    def handle(self, *args, action, **options):
        getattr(self, f"_{action}")(**options)

    def _balancer(self, name: str) -> Balancer:
        balancer = Balancer.objects.select_related("cluster").filter(name=name).first()
        if balancer is None:
            raise CommandError(f"no balancer named {name!r}", returncode=2)
        return balancer

    def _take(self, balancer, wait, **options):
        balancer = self._balancer(balancer)
        newest = Backup.objects.filter(balancer=balancer).order_by("-id").values_list("id", flat=True).first() or 0
        with transaction.atomic():
            services.request_backup(Actor.system("cli"), balancer)
        self.stdout.write(f"backup of {balancer.name} requested")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            backup = Backup.objects.filter(balancer=balancer, id__gt=newest).first()
            if backup:
                self.stdout.write(f"backup {backup.pk} taken: {backup.service_count} services, sha256 {backup.sha256}")
                return
            time.sleep(0.5)
        if wait:
            raise CommandError(f"no backup arrived from {balancer.name} within {wait:g} s (is its agent running?)")

    def _list(self, balancer, limit, **options):
        backups = Backup.objects.select_related("balancer").order_by("-taken_at", "-id")
        if balancer:
            backups = backups.filter(balancer=self._balancer(balancer))
        self.stdout.write(f"{'ID':>6}  {'TAKEN (UTC)':19}  {'BALANCER':16} {'TRIGGER':15} {'SVC':>5} {'RS':>6}  SHA256")
        for b in backups[:limit]:
            self.stdout.write(f"{b.pk:>6}  {b.taken_at:%Y-%m-%d %H:%M:%S}  {b.balancer.name:16} {b.trigger:15} "
                              f"{b.service_count:>5} {b.destination_count:>6}  {b.sha256[:16]}")

    def _show(self, id, json, **options):
        backup = Backup.objects.filter(pk=id).first()
        if backup is None:
            raise CommandError(f"no backup {id}", returncode=2)
        try:
            services.verified_table(backup)
        except services.CorruptBackup as exc:
            raise CommandError(str(exc), returncode=2)
        self.stdout.write(backup.document + "\n" if json else backup.text, ending="")

    def _upload(self, balancer, file, **options):
        balancer = self._balancer(balancer)
        try:
            with open(file, "rb") as handle:  # bytes: the backup keeps the file as it is, line ends and all
                raw = handle.read()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}", returncode=2) from None
        try:
            text = services.text_of_file(raw)
            backup = services.upload_backup(Actor.system("cli"), balancer, text, note=f"uploaded from {file}")
        except ValidationError as exc:
            raise CommandError(f"{file}: " + "; ".join(exc.messages), returncode=2) from None
        self.stdout.write(f"backup {backup.pk} stored: {backup.service_count} services, sha256 {backup.sha256}")
