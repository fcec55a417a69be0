"""The plan and the apply over the API: what applying would change on each balancer (the plan page's data, as
JSON), and the apply of the revision the caller reviewed (core.services.apply_cluster, scope `apply`)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from lvsadmin.core import services
from lvsadmin.web import plan_preview

from .problems import problem
from .views import Endpoint, actor, problems
from .views_ipvsadm import _cluster


def _line(line: plan_preview.Line) -> dict:
    return {"action": line.action, "what": line.what, "label": line.label, "command": line.command,
            "note": line.note, "fields": [{"field": n, "before": b, "after": a} for n, b, a in line.fields]}


def _balancer(plan: plan_preview.BalancerPlan) -> dict:
    reported = plan.reported
    return {"balancer": plan.balancer.name,
            "reported": None if reported is None else {"source": reported.source, "as_of": reported.as_of},
            "counts": plan.counts, "total": plan.total, "hidden": plan.hidden, "unowned": plan.unowned,
            "large": plan.large, "lines": [_line(line) for line in plan.lines]}


@extend_schema(parameters=[OpenApiParameter("all", OpenApiTypes.BOOL, description="every line, not the first "
                                            f"{plan_preview.PLAN_LINES_SHOWN} of each balancer")],
               responses={200: OpenApiTypes.OBJECT, **problems(404)})
class Plan(Endpoint):
    """GET: per balancer, what applying the desired state would change (against the table it last reported)."""

    def get(self, request, name):
        cluster = _cluster(name)
        limit = None if request.query_params.get("all") in ("1", "true") else plan_preview.PLAN_LINES_SHOWN
        plan = plan_preview.cluster_plan(cluster, limit=limit)
        return Response({"cluster": cluster.name, "revision": plan.revision, "large": plan.large,
                         "empty": plan.empty, "balancers": [_balancer(b) for b in plan.balancers]})


@extend_schema(request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT, **problems(404, 409, 422)})
class Apply(Endpoint):
    """POST {"revision": N, "confirm_large": false, "comment": ""}: send revision N (the one reviewed in the
    plan) to every balancer of the cluster. A plan removing many services or real servers needs confirm_large,
    as on the plan page."""

    write_scope = "apply"

    def post(self, request, name):
        cluster = _cluster(name)
        body = request.data if isinstance(request.data, dict) else {}
        revision, confirm, comment = body.get("revision"), body.get("confirm_large", False), body.get("comment", "")
        errors = {}
        if type(revision) is not int:
            errors["revision"] = ["required: the desired revision of the plan you reviewed (GET plan/)"]
        if not isinstance(confirm, bool):
            errors["confirm_large"] = ["true or false"]
        if not isinstance(comment, str) or len(comment) > 500:
            errors["comment"] = ["text, at most 500 characters"]
        if errors:
            raise exceptions.ValidationError(errors)
        if revision == cluster.desired_revision and not confirm and plan_preview.cluster_plan(cluster).large:
            raise exceptions.ValidationError({"confirm_large": [
                "this plan removes many services or real servers: send confirm_large: true to apply it"]})
        try:
            applied = services.apply_cluster(actor(request), cluster, reviewed_revision=revision, comment=comment)
        except services.StalePlan as exc:
            return problem(409, str(exc), revision=exc.current)
        names = list(cluster.balancers.order_by("name").values_list("name", flat=True))
        return Response({"revision": applied, "balancers": names}, status=202)
