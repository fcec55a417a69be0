import re
import socket

from django.core.management.base import BaseCommand

from lvsadmin.audit.log import Actor
from lvsadmin.core import services
from lvsadmin.core.models import Balancer, Cluster


class Command(BaseCommand):
    help = "On a fresh install, create cluster 'local' with one balancer named after this host; print its name."

    def handle(self, *args, **options):
        if Cluster.objects.exists():
            local = Balancer.objects.filter(cluster__name="local").first()
            self.stdout.write(local.name if local else "")
            return
        actor = Actor.system("setup")
        cluster = services.create_cluster(actor, name="local", description="This machine's own IPVS table.")
        name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "local"
        services.create_balancer(actor, cluster, name=name, address="127.0.0.1")
        self.stdout.write(name)
