"""Health checks of real servers: what a check is (spec), how results move a server up and down (state), and
what that does to the table a balancer carries (overlay). Plain Python: no Django, no Celery, no I/O. The agent
runs the probes (lvsadmin.agent.health); the panel stores, validates and shows the definitions."""
