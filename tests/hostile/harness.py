"""The hostile tier's harness: send one request as a signed-in admin and judge what it did.

The rule, for every form and POST endpoint of the panel: either a success (2xx/3xx), after which every page of
every cluster still renders and each cluster's own export still imports ("no stored row may ever make a page
return 500"), or a 4xx that says why and changed nothing (the core tables, backups, schedules, users and the
audit log, compared by a fingerprint before and after). Never a 500.

Each request runs in a transaction that is rolled back afterwards: one example's success is not the next one's
starting point, and nothing reaches an agent (tasks are sent on commit, which never comes).
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from lvsadmin.alerts.models import Channel
from lvsadmin.audit.models import ChangeRecord
from lvsadmin.backups.models import Backup, BackupPolicy
from lvsadmin.core.models import Balancer, Cluster, RealServer, VirtualService
from tests.helpers import PASSWORD, concrete, htmx, walk

from .forms import Form, post_form

User = get_user_model()
FINGERPRINTED = (Cluster, Balancer, VirtualService, RealServer, Backup, BackupPolicy, PeriodicTask,
                 IntervalSchedule, CrontabSchedule, User, Group, User.groups.through, Channel)
NEW_PASSWORD = "hostile tier passphrase 7"
# Endpoints whose form lives on another page (or that have none): their fields are given in `overrides`.
# (The users page shows its Unlock forms only while someone is locked out; the sign-in code step, only after a
# right password.)
FORMLESS = {"logout", "balancer_backup", "balancer_key_revoke", "enrolment_token", "enrol", "real_server_weight",
            "real_server_state", "users", "token_revoke", "login_code"}
# Endpoints that no request can pass untouched: an agent's enrolment needs a one-time token issued just before.
TOKEN_GUARDED = {"enrol"}
# An alert channel's Send test button is on the channel's page.
FORMLESS = FORMLESS | {"alert_channel_test"}
# A failed sign-in is audited by design: the login form's 4xx may add that record and nothing else.
AUDITED_REFUSALS = {"login": (ChangeRecord.Action.LOGIN_FAILED,)}


def post_endpoints() -> list[tuple[str, str]]:
    """(name, route) of every URL that takes a POST: the public ones and every one with a write role."""
    out = []
    for route, name, callback in walk():
        policy = callback.lvs_policy
        if "POST" not in policy.get("methods", ("POST",)):
            continue  # a public view that answers GET only (Prometheus's /metrics)
        if policy.get("public") or (policy.get("write") and "POST" in policy["methods"]):
            out.append((name, route))
    return out


def get_endpoints() -> list[tuple[str, str]]:
    return [(name, route) for route, name, callback in walk()
            if callback.lvs_policy.get("public") or "GET" in callback.lvs_policy["methods"]]


def admin_client(admin) -> Client:
    client = Client()
    client.force_login(admin)
    return client


def fingerprint(*, audit_exclude=()) -> str:
    """A digest of every row of the tables a request may write, and of the audit log's size and head."""
    digest = hashlib.sha256()
    for model in FINGERPRINTED:
        for row in model.objects.order_by("pk").values_list():
            digest.update(repr(row).encode())
    records = ChangeRecord.objects.exclude(action__in=audit_exclude)
    digest.update(repr((records.count(), records.order_by("-id").values_list("id", flat=True).first())).encode())
    return digest.hexdigest()


def url_of(route: str, objects: dict) -> str:
    return concrete(route, objects)


def page_form(client: Client, name: str, url: str) -> tuple[Form, bool]:
    """The form the endpoint's own page offers (empty for the few whose form is elsewhere), and whether the page
    refuses up front (409: a delete that is blocked)."""
    if name in FORMLESS:
        return Form("post", url), False
    response = client.get(url)
    assert response.status_code in (200, 409), (url, response.status_code)
    form = post_form(response.content.decode(), url)
    assert form is not None, f"{url} offers no form posting to itself: add it to FORMLESS with its fields"
    return form, response.status_code == 409


KEEPALIVED_CONF = """virtual_server 10.0.0.1 80 {
    delay_loop 5
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.11 80 {
        weight 10
        TCP_CHECK {
            connect_timeout 2
        }
    }
}
"""


def overrides(name: str, objects: dict, client: Client) -> dict[str, list[str]]:
    """Values that make the page's form a success when sent untouched (more than one: the choices)."""
    if name == "token_revoke":  # the Revoke buttons of the tokens page: one of the admin's own tokens
        return {"token": [str(_a_token_of(client))]}
    export = client.get(reverse("export", args=[objects["cluster_name"]])).content.decode()
    return {
        "login": {"username": ["ada"], "password": [PASSWORD]},
        "password_change": {"old_password": [PASSWORD], "new_password1": [NEW_PASSWORD],
                            "new_password2": [NEW_PASSWORD]},
        "cluster_create": {"name": ["hostile"]},
        "alert_channel_create": {"name": ["hostile"], "url": ["https://hooks.example.org/hostile"]},
        "balancer_create": {"name": ["lb9"], "address": ["198.51.100.9"]},
        "service_create": {"address": ["10.9.9.9"], "port": ["80"]},
        "real_server_create": {"address": ["192.0.2.99"]},
        "import": {"text": [export.replace("10.0.0.1:80", "10.0.0.2:80")], "step": ["preview", "commit"]},
        "health_import": {"text": ["-t 10.0.0.1:80 check http --path /health --fall 2\n"],
                          "step": ["preview", "commit"]},
        "keepalived_import": {"text": [KEEPALIVED_CONF], "step": ["preview", "commit"]},
        "console": {"text": ["-A -t 10.9.9.9:80 -s rr\n-a -t 10.9.9.9:80 -r 192.0.2.99:80 -m"],
                    "step": ["preview", "commit"]},
        "backup_upload": {"text": [export], "note": ["hostile"]},
        "balancer_schedule": {"crontab": ["15 3 * * *"], "keep_last": ["5"], "keep_days": ["30"]},
        "cluster_schedule": {"every_seconds": ["3600"], "keep_last": ["5"], "keep_days": ["30"]},
        "user_create": {"username": ["mallory"], "password1": [NEW_PASSWORD], "password2": [NEW_PASSWORD]},
        "real_server_weight": {"weight": ["5"]},
        "balancer_key": {"public_key": ["ed25519:2Xc2fpiu9Sbx7ddm2TyWEHA3S2pKirhkrr9NMP9Yei8="]},
        "real_server_state": {"state": ["draining", "disabled", "active"]},
        "users": {"username": ["vera"], "address": ["127.0.0.1"]},
        "tokens": {"name": ["ci"]},
    }.get(name, {})


def endpoint(name: str, objects: dict, admin) -> tuple[str, Form, dict[str, list[str]], bool]:
    """The URL of an endpoint, its page's form, the values that make it a success, and whether it is blocked."""
    route = dict((n, r) for n, r in post_endpoints())[name]
    url = url_of(route, objects)
    client = admin_client(admin)
    form, blocked = page_form(Client() if name == "login" else client, name, url)
    return url, form, overrides(name, objects, client), blocked or name in TOKEN_GUARDED


def _a_token_of(client: Client) -> int:
    from lvsadmin.api import tokens
    from lvsadmin.audit.log import Actor

    user = User.objects.get(pk=client.session["_auth_user_id"])
    return tokens.create_token(Actor.system("hostile"), user, name="to revoke", scopes=["read"])[0].pk


def baseline(form: Form, fixed: dict[str, list[str]]) -> dict[str, list[str]]:
    """The form as its page offers it, with the values that make it a success."""
    return {**form.baseline(), **{k: v[:1] for k, v in fixed.items()}}


def send(client: Client, url: str, data: dict[str, list], files: dict[str, bytes], *, hx: bool):
    """POST as a hostile client would: the body encoded by hand (values may be bytes that are not UTF-8)."""
    headers = htmx("form") if hx else {}
    if files:
        payload = {k: [v.decode("latin-1") if isinstance(v, bytes) else v for v in vs] for k, vs in data.items()}
        payload.update({k: SimpleUploadedFile("hostile.rules", content) for k, content in files.items()})
        return client.post(url, payload, **headers)
    body = urlencode([(k, v) for k, vs in data.items() for v in vs])
    return client.generic("POST", url, body, content_type="application/x-www-form-urlencoded", **headers)


def says_why(response) -> bool:
    """A refusal carries a message: a body, and on a form page (409/422) an alert next to the problem."""
    body = b"".join(response.streaming_content) if response.streaming else response.content
    if not body.strip():
        return False
    if response.status_code in (409, 422) and response.get("Content-Type", "").startswith("text/html"):
        return b'role="alert"' in body
    return True


def pages_of_every_cluster(admin) -> list[str]:
    urls = [reverse("dashboard"), reverse("audit"), reverse("audit_csv")]
    for cluster in Cluster.objects.order_by("pk"):
        urls += [reverse(n, args=[cluster.name]) for n in ("cluster", "cluster_list", "export", "plan",
                                                            "cluster_backups")]
    for balancer in Balancer.objects.order_by("pk"):
        urls += [reverse(n, args=[balancer.name]) for n in ("balancer", "balancer_list", "balancer_backups")]
    urls += [reverse("service", args=[pk]) for pk in VirtualService.objects.order_by("pk").values_list("pk", flat=True)]
    return urls


def still_works(admin) -> None:
    """After a success: every page renders, and each cluster's export imports back and uploads as a backup."""
    client = admin_client(admin)
    for url in pages_of_every_cluster(admin):
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
        assert response.status_code < 500, f"GET {url} after the success: {response.status_code}"
    for cluster in Cluster.objects.order_by("pk"):
        export = client.get(reverse("export", args=[cluster.name])).content.decode()
        if not export.strip():
            continue
        response = client.post(reverse("import", args=[cluster.name]), {"text": export, "step": "preview"})
        assert response.status_code == 200, f"the export of {cluster} does not import back: {response.status_code}"
        for balancer in cluster.balancers.order_by("pk")[:1]:
            response = client.post(reverse("backup_upload", args=[balancer.name]), {"text": export})
            assert response.status_code < 500, f"upload of {cluster}'s export to {balancer}: {response.status_code}"


def attempt(name: str, url: str, data: dict, files: dict, *, hx: bool, admin) -> int:
    """One hostile request, judged by the rule above; the database is as it was afterwards. Returns the status."""
    with transaction.atomic():
        client = Client() if name == "login" else admin_client(admin)
        exclude = AUDITED_REFUSALS.get(name, ())
        before = fingerprint(audit_exclude=exclude)
        response = send(client, url, data, files, hx=hx)
        status = response.status_code
        assert status < 500, f"POST {url}: {status}"
        if 400 <= status < 500:
            assert fingerprint(audit_exclude=exclude) == before, f"POST {url}: {status}, yet the database changed"
            assert says_why(response), f"POST {url}: {status} with no message saying why"
        else:
            still_works(admin)
        transaction.set_rollback(True)
    return status
