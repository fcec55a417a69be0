import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.management.base import BaseCommand

from lvsadmin.audit.log import Actor, record


class Command(BaseCommand):
    help = "Create the first admin user, printing its password once, if there are no users yet."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.exists():
            return
        # 24 random characters, checked by the same validators as any password set in the panel.
        password = secrets.token_urlsafe(18)
        validate_password(password, User(username=username))
        user = User.objects.create_superuser(username=username, email="", password=password)
        record(Actor.system("setup"), "create", user, object_type="user", object_repr=username,
               after={"username": username, "role": "admin"})
        self.stdout.write(self.style.SUCCESS(f"Created the first admin: user {username!r}, password {password!r}"))
        self.stdout.write("This password is shown only once: change it after signing in.")
