# lvsadmin: one image for every process (web, control worker, beat, agent); docker-compose.yml picks the command.

# The Python packages in a virtualenv built in a stage of its own: python-ldap (sign-in through LDAP) has no wheel
# on PyPI and compiles here, so the image keeps no compiler.
FROM python:3.11-slim-bookworm AS packages
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libldap2-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN python -m venv /opt/lvsadmin && /opt/lvsadmin/bin/pip install -r requirements.txt

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/lvsadmin/bin:$PATH

# ipvsadm and kmod: for operators inspecting a balancer from the agent's container (the agent itself speaks netlink).
# libldap and libsasl2: python-ldap's run-time libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ipvsadm kmod libldap-2.5-0 libsasl2-2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=packages /opt/lvsadmin /opt/lvsadmin

WORKDIR /app
COPY . .
RUN DEBUG=1 python manage.py collectstatic --no-input -v 0 \
 && useradd --system --home-dir /app --shell /usr/sbin/nologin lvsadmin \
 && mkdir -p /app/var/log /app/var/keys /var/lib/lvsadmin-agent \
 && chown -R lvsadmin /app/var

# The web, control worker and beat run unprivileged; the agent service runs as root with NET_ADMIN.
USER lvsadmin
EXPOSE 8000
# No control socket: its default place, $HOME/.gunicorn, is not writable here (and compose restarts the service).
CMD ["gunicorn", "lvsadmin.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", "--no-control-socket"]
