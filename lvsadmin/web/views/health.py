"""Health definitions on the pages: the service page's "Health check" panel, and the forms of a service's
check, its policy and a real server's override. Writes go through core.services.health."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.core.models import HealthCheck, RealServer, VirtualService
from lvsadmin.core.services import health
from lvsadmin.health.spec import NO_CHECK
from lvsadmin.ipvs.model import hostport

from ..forms_health import CheckForm, PolicyForm, check_words, policy_words
from ..roles import OPERATOR, policy
from .common import actor, form_round_trip

TEMPLATE = "web/health_form.html"


def health_panel(svc: VirtualService) -> dict:
    """What the service page's panel shows: the check and the policy in words, and the servers that have their
    own (one query)."""
    rows = HealthCheck.objects.filter(service=svc).select_related("real_server").order_by(
        "real_server__position", "real_server_id")
    check, overrides = None, []
    for row in rows:
        if row.real_server is None:
            check = row.to_check()
        else:
            overrides.append((row.real_server, check_words(row.to_check())))
    return {"check": check_words(check), "has_check": check is not None, "policy": policy_words(svc.to_policy()),
            "overrides": overrides}


def _service(pk) -> VirtualService:
    return get_object_or_404(VirtualService.objects.select_related("cluster"), pk=pk)


def _done(svc):
    return lambda _saved: reverse("service", args=[svc.pk])


@policy(read=OPERATOR, write=OPERATOR)
def service_check_edit(request, pk):
    svc = _service(pk)
    row = health.service_check_row(svc)
    form = CheckForm(request.POST or None, check=row.to_check() if row else None,
                     version=health.check_version(svc))

    def save(data):
        values = form.check_values()
        return health.set_service_check(actor(request), svc, None if values == NO_CHECK else values,
                                        expected_version=data["version"], other_kinds="ignore")

    return form_round_trip(request, form, save, template=TEMPLATE,
                           context={"svc": svc, "cluster": svc.cluster, "title": f"Health check of {svc.label}"},
                           success_url=_done(svc), success_message=f"Saved the health check of {svc.label}.")


@policy(read=OPERATOR, write=OPERATOR)
def service_policy_edit(request, pk):
    svc = _service(pk)
    form = PolicyForm(request.POST or None, policy=svc.to_policy(), version=health.policy_version(svc))

    def save(data):
        return health.set_health_policy(actor(request), svc, form.policy_values(), expected_version=data["version"])

    return form_round_trip(request, form, save, template=TEMPLATE,
                           context={"svc": svc, "cluster": svc.cluster, "title": f"Health policy of {svc.label}"},
                           success_url=_done(svc), success_message=f"Saved the health policy of {svc.label}.")


@policy(read=OPERATOR, write=OPERATOR)
def server_check_edit(request, pk):
    rs = get_object_or_404(RealServer.objects.select_related("service__cluster"), pk=pk)
    svc, row = rs.service, health.server_override_row(rs)
    form = CheckForm(request.POST or None, override=True, check=row.to_check() if row else None,
                     inherited=row is None, version=health.override_version(rs))
    name = hostport(rs.address, rs.port)

    def save(data):
        return health.set_server_check(actor(request), rs, form.check_values(), expected_version=data["version"],
                                       other_kinds="ignore")

    return form_round_trip(request, form, save, template=TEMPLATE,
                           context={"svc": svc, "cluster": svc.cluster, "rs": rs,
                                    "title": f"Health check of real server {name} of {svc.label}"},
                           success_url=_done(svc), success_message=f"Saved the health check of {name}.")
