"""`manage.py enrol NAME`: a one-time enrolment token for balancer NAME's agent, and the command that uses it."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lvsadmin.audit.log import Actor
from lvsadmin.core import services
from lvsadmin.core.models import Balancer


class Command(BaseCommand):
    help = ("Issue a one-time enrolment token for a balancer's agent (valid 24 hours; a new one voids the previous) "
            "and print how the agent uses it.")

    def add_arguments(self, parser):
        parser.add_argument("balancer")
        parser.add_argument("--panel-url", default="https://PANEL", help="the panel's URL as the balancer reaches it")
        parser.add_argument("--user", default="", help="who asks (audited); default: the command line")

    def handle(self, *args, balancer, panel_url, user, **options):
        target = Balancer.objects.filter(name=balancer).first()
        if target is None:
            raise CommandError(f"no balancer {balancer!r}")
        actor = Actor.system(user or "manage.py enrol")
        token = services.issue_enrolment_token(actor, target)
        self.stdout.write(token)
        self.stderr.write(
            f"On {target.name}, within {services.clusters.ENROL_TOKEN_HOURS} hours:\n"
            f"  LVSADMIN_PANEL_URL={panel_url} LVSADMIN_ENROL_TOKEN={token} scripts/run-agent {target.name}\n"
            f"(the panel's own public key, for comparison: {settings.PANEL_SIGNING_KEY_FILE}.pub)")
