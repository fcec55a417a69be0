"""The hostile inputs issue 9 reported, sent through the same harness: each one is a 4xx that says why and
writes nothing, or a success after which every page still renders and the cluster's export imports back.

They show that the net catches the class: most failed here when it was written (the zone id with a 500 on the
cluster's `-Ln` page, keep_days with a 500 on the next backup upload, 2^63 with an OverflowError on SQLite and
10^12 on PostgreSQL, the 31-day-and-one-second persistence timeout with an export that does not import back),
and pass once the owners of those parts fixed them. The NUL byte and the sign-in cases are kept as reported.
"""

from __future__ import annotations

import pytest

from .harness import attempt, baseline, endpoint

pytestmark = [pytest.mark.django_db, pytest.mark.hostile]

RULE = b"-A -t 10.7.7.7:80 -s rr\n-a -t 10.7.7.7:80 -r 192.0.2.77:80 -m -w 1\n"
KNOWN = [
    pytest.param("service_create", {"address": "fe80::1%eth0"}, {}, id="zone-id-service"),
    pytest.param("service_create", {"persistent": "on", "timeout": str(86400 * 31 + 1)}, {},
                 id="persistence-timeout-over-31-days"),
    pytest.param("cluster_edit", {"tcp_timeout": str(2**32)}, {}, id="tcp-timeout-2^32"),
    pytest.param("balancer_schedule", {"keep_days": "1000000"}, {}, id="keep-days-1000000"),
    pytest.param("cluster_schedule", {"every_seconds": str(2**63)}, {}, id="every-seconds-2^63"),
    pytest.param("cluster_schedule", {"keep_last": str(2**63)}, {}, id="keep-last-2^63"),
    pytest.param("balancer_schedule", {"keep_last": str(10**12)}, {}, id="keep-last-10^12"),
    pytest.param("import", {"text": "", "step": "commit"}, {"upload": RULE + b"# saved \x00 by hand\n"},
                 id="nul-in-uploaded-import"),
    pytest.param("login", {"username": "x" * 300}, {}, id="login-username-over-255"),
    pytest.param("login", {"username": "ada\x00"}, {}, id="login-username-with-nul"),
    pytest.param("login", {"username": '=HYPERLINK("http://x/","x")', "password": "wrong"}, {},
                 id="login-username-formula"),
]


@pytest.mark.parametrize(("name", "changed", "files"), KNOWN)
def test_a_hostile_input_of_issue_9_is_refused_with_a_message_or_leaves_every_page_working(name, changed, files,
                                                                                          objects, admin):
    url, form, fixed, _ = endpoint(name, objects, admin)
    data = baseline(form, fixed) | {k: [v] for k, v in changed.items()}
    attempt(name, url, data, files, hx=False, admin=admin)
