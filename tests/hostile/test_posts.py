"""Every form and POST endpoint, fed hostile values by a signed-in admin: a success after which the panel still
works, or a 4xx that says why and wrote nothing; never a 500 (the rule is in `harness`).

The endpoints come from the URL resolver, as in the URL × role walk, and each form's fields from its own page:
a new view or a new field is fuzzed without touching this tier.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .harness import FORMLESS, attempt, baseline, endpoint, post_endpoints
from .values import mutations

pytestmark = [pytest.mark.django_db, pytest.mark.hostile]

# Modest and reproducible: the whole tier stays within a few minutes on two cores, the same examples every run.
HOSTILE = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "15")), deadline=None, derandomize=True,
                   database=None, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                   suppress_health_check=list(HealthCheck))
ENDPOINTS = post_endpoints()


def test_every_post_endpoint_is_walked():
    names = {name for name, _ in ENDPOINTS}
    assert {"service_create", "real_server_weight", "backup_upload", "login", "user_edit"} <= names
    assert FORMLESS <= names


@pytest.mark.parametrize("name", [name for name, _ in ENDPOINTS])
def test_a_hostile_post_gets_a_success_or_a_4xx_that_says_why_and_writes_nothing(name, objects, admin):
    url, form, fixed, blocked = endpoint(name, objects, admin)
    if not blocked:
        # The untouched form must succeed, or the fuzzing would never reach past the form's first check.
        assert attempt(name, url, baseline(form, fixed), {}, hx=False, admin=admin) < 400, f"{name}: refused as is"

    @HOSTILE
    @given(request=mutations(form, fixed), hx=st.booleans())
    def hostile(request, hx):
        data, files = request
        attempt(name, url, data, files, hx=hx, admin=admin)

    hostile()
