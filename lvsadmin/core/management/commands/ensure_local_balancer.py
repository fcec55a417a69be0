import re
import socket
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from lvsadmin import signing
from lvsadmin.audit.log import Actor
from lvsadmin.core import services
from lvsadmin.core.models import Balancer, Cluster

AGENT_KEYS = settings.BASE_DIR / "var" / "agents"


def local_agent_key(name: str) -> Path:
    """The local balancer's agent key (var/agents/NAME_ed25519, made once): scripts/run-agent hands it to the agent."""
    path = AGENT_KEYS / f"{name}_ed25519"
    if not path.exists():
        signing.write_private_key(path)
    return path


class Command(BaseCommand):
    help = ("On a fresh install, create cluster 'local' with one balancer named after this host; print its name. "
            "The local balancer is enrolled: its agent's key (var/agents/NAME_ed25519) is made and registered.")

    def handle(self, *args, **options):
        actor = Actor.system("setup")
        if Cluster.objects.exists():
            local = Balancer.objects.filter(cluster__name="local").first()
            if local is not None and not local.key_revoked:
                self._enrol(actor, local)
            self.stdout.write(local.name if local else "")
            return
        cluster = services.create_cluster(actor, name="local", description="This machine's own IPVS table.")
        name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "local"
        balancer = services.create_balancer(actor, cluster, name=name, address="127.0.0.1")
        self._enrol(actor, balancer)
        self.stdout.write(name)

    def _enrol(self, actor: Actor, balancer: Balancer) -> None:
        """Register this checkout's key for the local balancer (a revoked one stays revoked: an admin's call)."""
        public = signing.public_text(signing.load_private_key(local_agent_key(balancer.name)))
        if balancer.public_key != public:
            services.set_balancer_key(actor, balancer, public_key=public)
