"""Every page, asked with a hostile query string by a signed-in admin: never a 500, and a GET writes nothing.

The parameter names are those of the page's own GET forms (filters, sorting, paging) and the few that links
carry (page, before, after, a, b, show, all).
"""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from .forms import forms_of
from .harness import admin_client, fingerprint, get_endpoints, url_of
from .test_posts import HOSTILE
from .values import BOUNDARY_INTS, texts

pytestmark = [pytest.mark.django_db, pytest.mark.hostile]

LINK_PARAMETERS = ("page", "before", "after", "a", "b", "show", "all", "next", "q", "sort")
ENDPOINTS = get_endpoints()


@pytest.mark.parametrize(("name", "route"), ENDPOINTS, ids=[name for name, _ in ENDPOINTS])
def test_a_page_asked_with_a_hostile_query_string_answers_without_a_500_and_writes_nothing(name, route, objects,
                                                                                           admin):
    url = url_of(route, objects)
    client = admin_client(admin)
    page = client.get(url)
    names = set(LINK_PARAMETERS)
    if page.status_code == 200 and page.get("Content-Type", "").startswith("text/html"):
        names |= {f for form in forms_of(page.content.decode()) if form.method == "get" for f in form.fields}
    values = st.one_of(st.sampled_from(BOUNDARY_INTS).map(str), texts(), st.sampled_from(("1", "0", "desired")))
    query = st.lists(st.tuples(st.sampled_from(sorted(names)), values), min_size=1, max_size=4)

    @HOSTILE
    @given(query=query)
    def hostile(query):
        with transaction.atomic():
            client.force_login(admin)
            before = fingerprint()
            response = client.get(url, query)
            if response.streaming:
                b"".join(response.streaming_content)
            assert response.status_code < 500, f"GET {url} {query}: {response.status_code}"
            assert fingerprint() == before, f"GET {url} {query} wrote to the database"
            transaction.set_rollback(True)

    hostile()
