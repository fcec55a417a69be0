# lvsadmin: one image for every process (web, control worker, beat, agent); docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# ipvsadm and kmod: for operators inspecting a balancer from the agent's container (the agent itself speaks netlink).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ipvsadm kmod \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
RUN DEBUG=1 python manage.py collectstatic --no-input -v 0 \
 && useradd --system --home-dir /app --shell /usr/sbin/nologin lvsadmin \
 && mkdir -p /app/var/log /app/var/keys /var/lib/lvsadmin-agent \
 && chown -R lvsadmin /app/var

# The web, control worker and beat run unprivileged; the agent service runs as root with NET_ADMIN.
USER lvsadmin
EXPOSE 8000
CMD ["gunicorn", "lvsadmin.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
