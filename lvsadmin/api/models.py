"""API tokens: a user's credentials for the REST API, several per user, each with its own scopes.

A token is shown once, when it is made, as `lvs_<id>_<secret>`. Only the id (to find the row) and the SHA-256 of
the secret are kept: a copy of the database, or of its backups, holds no usable token. The secret is 256 random
bits, so a plain (unsalted, fast) hash is enough; it is compared in constant time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

SCOPES = ("read", "write", "apply", "admin")


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_id = models.CharField(max_length=16, unique=True, help_text="The public part of the token, to find its row.")
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the secret part, hex.")
    scopes = models.JSONField(default=list, help_text="A subset of read, write, apply, admin.")
    allowed_networks = models.JSONField(default=list, blank=True,
                                        help_text="Addresses or networks it may be used from; empty: anywhere.")
    expires = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    revoked = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)
    last_used_from = models.CharField(max_length=45, blank=True, default="")

    class Meta:
        ordering = ["user_id", "-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (lvs_{self.key_id}_…)"

    @property
    def prefix(self) -> str:
        """What the token pages show of it: enough to recognise it, nothing to use."""
        return f"lvs_{self.key_id}_…"

    def is_expired(self, now=None) -> bool:
        return self.expires is not None and self.expires <= (now or timezone.now())

    @property
    def active(self) -> bool:
        return self.revoked is None and not self.is_expired()
