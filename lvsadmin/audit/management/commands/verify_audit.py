from django.core.management.base import BaseCommand, CommandError

from lvsadmin.audit.log import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit log's hash chain and name the first record that does not match."

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(str(report))
        self.stdout.write(str(report))
