"""The hostile tier reuses the web tests' fixtures: users in each role, the cluster `web`, one of each object."""

import pytest

from lvsadmin.audit.log import Actor
from tests.unit.conftest_web import *  # noqa: F403
from tests.unit.test_web_access import objects  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def schedules(objects):  # noqa: F811 (the fixture imported above)
    """A backup schedule for the balancer and one for the cluster, so that their edit and delete pages have one."""
    from lvsadmin.backups.services import set_policy
    from lvsadmin.core.models import Balancer, Cluster

    set_policy(Actor.system("test"), balancer=Balancer.objects.get(name=objects["balancer_name"]),
               crontab="15 3 * * *", keep_last=10)
    set_policy(Actor.system("test"), cluster=Cluster.objects.get(name=objects["cluster_name"]), every_seconds=3600,
               keep_days=7)
