"""Sending one grouped message to one channel: an e-mail, a generic JSON webhook or a Slack-compatible one.

A message is what incidents.evaluate told one channel in one evaluation: `{"status": "firing" | "resolved",
"incidents": [Notice.to_dict(), ...]}` ("firing" when any of them fires), the generic webhook's body as it is.
`send` does the I/O and raises DeliveryFailed (with the HTTP status when there was one); retrying is the task's
business (tasks.deliver). Webhook URLs are http(s) only (`check_url`, the form's and the service's one rule).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email

from .models import Channel

USER_AGENT = "lvsadmin-alerts/1"


class DeliveryFailed(Exception):
    def __init__(self, error: str, http_status: int | None = None):
        super().__init__(error)
        self.error, self.http_status = error[:300], http_status


def check_url(url: str) -> str:
    """An http(s) URL with a host, or a ValidationError saying what is wrong."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is no number raises here)
    except ValueError as exc:
        raise ValidationError(f"Not a URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http:// and https:// URLs are accepted.")
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValidationError("The URL needs a host name or address, and no spaces.")
    return url


def check_addresses(text: str) -> list[str]:
    """The recipients of an e-mail channel, one per line or comma-separated; a ValidationError naming a bad one."""
    addresses = [a for a in (text or "").replace(",", "\n").split() if a]
    if not addresses:
        raise ValidationError("Give at least one e-mail address.")
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not an e-mail address.") from None
    return addresses


def message(notices: list[dict], test: bool = False) -> dict:
    status = "firing" if any(n["status"] == "firing" for n in notices) else "resolved"
    return {"status": status, "incidents": notices, **({"test": True} if test else {})}


def lines(msg: dict) -> list[str]:
    """One line per incident: `[FIRING] summary`."""
    return [f"[{n['status'].upper()}] {n['summary']}" for n in msg["incidents"]]


def subject(msg: dict) -> str:
    n = len(msg["incidents"])
    first = msg["incidents"][0]["summary"] if n else ""
    more = f" (+{n - 1} more)" if n > 1 else ""
    test = "[test] " if msg.get("test") else ""
    return f"{test}[{settings.SITE_NAME}] {msg['status'].upper()}: {first}{more}"[:200]


def slack_body(msg: dict) -> dict:
    header = "Test message from " if msg.get("test") else ""
    return {"text": f"{header}{settings.SITE_NAME}: " + "\n".join(lines(msg))}


def send(channel: Channel, msg: dict) -> int | None:
    """Send `msg` to the channel; returns the HTTP status of a webhook's answer. Raises DeliveryFailed."""
    if channel.kind == Channel.Kind.EMAIL:
        _email(channel, msg)
        return None
    body = slack_body(msg) if channel.kind == Channel.Kind.SLACK else msg
    return _post(channel.url, body)


def _email(channel: Channel, msg: dict) -> None:
    body = "\n".join(lines(msg)) + "\n\nTimes are UTC.\n" + "\n".join(
        f"#{n['id']} {n['rule']} opened {n['opened_at']}" for n in msg["incidents"] if n.get("id"))
    try:
        send_mail(subject(msg), body, settings.DEFAULT_FROM_EMAIL, channel.recipients(), fail_silently=False)
    except Exception as exc:  # SMTP errors, refused connections, timeouts: all a failed attempt
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook is POSTed where an admin configured it, nowhere else: a 3xx is a failed delivery (HTTPError)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _post(url: str, body: dict) -> int:
    try:
        check_url(url)  # also at save; a URL changed in the database by hand is still never sent to file://
    except ValidationError as exc:
        raise DeliveryFailed(" ".join(exc.messages)) from None
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with _OPENER.open(request, timeout=settings.ALERT_WEBHOOK_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"{type(reason).__name__}: {reason}") from None
