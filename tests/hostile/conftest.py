"""The hostile tier uses the web tests' fixtures of tests/conftest.py: users in each role, the cluster `web`, one of
each object; and a backup schedule of each kind."""

import pytest

from lvsadmin.audit.log import Actor


@pytest.fixture(autouse=True)
def schedules(objects):
    """A backup schedule for the balancer and one for the cluster, so that their edit and delete pages have one."""
    from lvsadmin.backups.services import set_policy
    from lvsadmin.core.models import Balancer, Cluster

    set_policy(Actor.system("test"), balancer=Balancer.objects.get(name=objects["balancer_name"]),
               crontab="15 3 * * *", keep_last=10)
    set_policy(Actor.system("test"), cluster=Cluster.objects.get(name=objects["cluster_name"]), every_seconds=3600,
               keep_days=7)


@pytest.fixture(autouse=True)
def alert_channel(objects):
    """An alert channel named like the cluster (the URL walk fills every `<slug:name>` outside /balancers/ with
    it), so that its page, edit, test and delete have one."""
    from lvsadmin.alerts.models import Channel

    return Channel.objects.create(name=objects["cluster_name"], kind="webhook", url="https://hooks.example.org/x")
