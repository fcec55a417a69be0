from django.core.management.base import BaseCommand, CommandError

from lvsadmin.audit.log import verify_chain


class Command(BaseCommand):
    help = ("Recompute the audit log's keyed hash chain, name the first record that does not match, and check it "
            "against its witnesses (the heads the balancers' agents and the backups saw): exit 1 when broken.")

    def handle(self, *args, **options):
        report = verify_chain()
        if not report.ok:
            raise CommandError(str(report))
        self.stdout.write(str(report))
