"""Enrolment: a balancer's agent exchanges a one-time token for the panel's public key, registering its own.

The token is issued by an admin (balancer page, or `manage.py enrol NAME`) and shown once; the agent's side is
`python -m lvsadmin.agent.enrol` (scripts/run-agent runs it when given LVSADMIN_ENROL_TOKEN). A machine's request
with its own credential (the token), not a browser's form: no session, no CSRF token. The answer carries nothing
secret: the panel's public key.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from lvsadmin.core import services, trust
from lvsadmin.core.models import Balancer

from ..pages import render_page
from ..roles import ADMIN, policy, public
from .common import actor

MAX_BODY = 4096


@public
@csrf_exempt
@require_POST
def enrol(request):
    """POST {"balancer", "token", "public_key"} (JSON) → {"balancer", "fingerprint", "panel_public_key"}."""
    if len(request.body) > MAX_BODY:
        return JsonResponse({"error": "request too large"}, status=413)
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "a JSON object with balancer, token and public_key"}, status=400)
    fields = [data.get(k) if isinstance(data, dict) else None for k in ("balancer", "token", "public_key")]
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in fields):
        return JsonResponse({"error": "a JSON object with balancer, token and public_key"}, status=400)
    name, token, public_key = fields
    try:
        balancer = services.enrol_with_token(balancer_name=name, token=token, public_key=public_key)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=403)
    return JsonResponse({"balancer": balancer.name, "fingerprint": balancer.key_fingerprint,
                         "panel_public_key": trust.panel_public_key()})


@policy(read=ADMIN, write=ADMIN, methods=("POST",))
def enrolment_token(request, name):
    """Issue a one-time enrolment token for the balancer's agent and show it, once."""
    balancer = get_object_or_404(Balancer.objects.select_related("cluster"), name=name)
    token = services.issue_enrolment_token(actor(request), balancer)
    balancer.refresh_from_db()
    context = {"balancer": balancer, "cluster": balancer.cluster, "token": token,
               "panel_url": request.build_absolute_uri("/").rstrip("/")}
    return render_page(request, "web/enrolment_token.html", context)
