"""Test settings: production settings with plain-HTTP test servers and fast password hashing."""

import os
import secrets
import tempfile

# Production settings refuse to start without a secret key: the tests make one of their own (a random key per
# test run, inherited by the workers the tests start), whatever var/secret_key holds.
os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(50))
os.environ.setdefault("AUDIT_KEY", "tests-audit-" + secrets.token_urlsafe(50))  # likewise the audit chain's key
if not os.environ.get("PANEL_SIGNING_KEY_FILE"):
    # Likewise the panel's signing key: a file of this run (its public half beside it, for the agents started).
    from lvsadmin import signing  # noqa: E402

    _dir = tempfile.mkdtemp(prefix="lvsadmin-test-keys-")
    signing.write_private_key(os.path.join(_dir, "panel_ed25519"))
    os.environ["PANEL_SIGNING_KEY_FILE"] = os.path.join(_dir, "panel_ed25519")

from lvsadmin.settings import *  # noqa: E402,F401,F403

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite's admins sign in with force_login or a password alone; the two-factor tests (tests/unit/
# test_two_factor.py, tests/browser/test_two_factor_in_the_browser.py) put the production default back.
TWO_FACTOR_REQUIRED = "none"
