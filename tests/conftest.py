import pytest

from lvsadmin.audit.log import Actor


@pytest.fixture
def actor():
    return Actor(username="alice", user_id=None, request_id="req-test")


@pytest.fixture
def cluster(db, actor):
    from lvsadmin.core import services

    return services.create_cluster(actor, name="web")
