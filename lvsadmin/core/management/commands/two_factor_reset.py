"""`manage.py two_factor_reset USER`: remove a user's authenticator and recovery codes, for someone who lost both.
Audited. An admin must then set up a new authenticator at their next sign-in (TWO_FACTOR_REQUIRED)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from lvsadmin.audit.log import Actor
from lvsadmin.core import two_factor


class Command(BaseCommand):
    help = "Turn off a user's two-factor sign-in (authenticator and recovery codes), for one who lost both."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--user", default="", help="who does it (audited); default: the command line")

    def handle(self, *args, username, user, **options):
        target = get_user_model().objects.filter(username=username).first()
        if target is None:
            raise CommandError(f"no user {username!r}")
        if not two_factor.enabled(target) and not two_factor.recovery_codes_left(target):
            self.stdout.write(f"{username} has no two-factor sign-in: nothing to reset")
            return
        two_factor.disable(Actor.system(user or "manage.py two_factor_reset"), target, check=False)
        self.stdout.write(f"{username}: two-factor sign-in turned off; they sign in with their password alone"
                          f"{' and must set it up again' if two_factor.required(target) else ''}")
