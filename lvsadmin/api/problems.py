"""Every error of the API as RFC 9457 problem details (`application/problem+json`):

    {"type": "urn:lvsadmin:problem:validation", "title": "Invalid input", "status": 422,
     "detail": "address: 10.0.0.1:80 already exists in cluster web", "errors": {"address": ["…"]}}

`errors` (by field, as the forms name them; `non_field_errors` for the object as a whole) comes with validation
problems; a stale write (409) carries the object's `current` state and its `version`. The messages are the
service layer's, so the API and the forms say the same thing.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from lvsadmin.audit.log import ChainBroken
from lvsadmin.web.forms import FIELD_ALIASES

CONTENT_TYPE = "application/problem+json"
TYPES = {  # status -> (type, title) of the problems that are not one of the special ones below
    400: ("urn:lvsadmin:problem:bad-request", "Bad request"),
    401: ("urn:lvsadmin:problem:unauthenticated", "Authentication needed"),
    403: ("urn:lvsadmin:problem:forbidden", "Not allowed"),
    404: ("urn:lvsadmin:problem:not-found", "Not found"),
    405: ("urn:lvsadmin:problem:method-not-allowed", "Method not allowed"),
    406: ("urn:lvsadmin:problem:not-acceptable", "Not acceptable"),
    409: ("urn:lvsadmin:problem:stale-version", "Changed by someone else"),
    415: ("urn:lvsadmin:problem:unsupported-media-type", "Unsupported media type"),
    422: ("urn:lvsadmin:problem:validation", "Invalid input"),
    428: ("urn:lvsadmin:problem:precondition-required", "If-Match required"),
    429: ("urn:lvsadmin:problem:throttled", "Too many requests"),
    503: ("urn:lvsadmin:problem:unavailable", "Service unavailable"),
}


class PreconditionRequired(exceptions.APIException):
    status_code = 428
    default_detail = ("send the version this change is based on: If-Match with the ETag of your last GET "
                      "(or the object's `version`)")
    default_code = "precondition_required"


def problem(status_code: int, detail: str, *, headers: dict | None = None, **extra) -> Response:
    kind, title = TYPES.get(status_code, ("about:blank", ""))
    body = {"type": kind, "title": title, "status": status_code, "detail": detail, **extra}
    return Response(body, status=status_code, headers=headers, content_type=CONTENT_TYPE)


def field_errors(detail) -> dict[str, list[str]]:
    """DRF's or Django's errors as {field: [messages]}, with the forms' field names."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for name, messages in detail.items():
            name = "non_field_errors" if name in (NON_FIELD_ERRORS, "non_field_errors") else name
            name = FIELD_ALIASES.get(name, name)
            name = "non_field_errors" if name == NON_FIELD_ERRORS else name
            out.setdefault(name, []).extend(_flat(messages))
        return out
    return {"non_field_errors": _flat(detail)}


def _flat(messages) -> list[str]:
    if isinstance(messages, dict):  # a nested object's errors
        return [f"{k}: {m}" for k, v in messages.items() for m in _flat(v)]
    if isinstance(messages, (list, tuple)):
        return [m for item in messages for m in _flat(item)]
    return [str(messages)]


def validation_problem(errors: dict[str, list[str]]) -> Response:
    detail = "; ".join(f"{'' if k == 'non_field_errors' else k + ': '}{m}" for k, ms in errors.items() for m in ms)
    return problem(422, detail, errors=errors)


def handler(exc, context):
    """REST_FRAMEWORK's EXCEPTION_HANDLER."""
    if isinstance(exc, DjangoValidationError):
        return validation_problem(field_errors(exc.message_dict if hasattr(exc, "error_dict") else exc.messages))
    if isinstance(exc, exceptions.ValidationError):
        return validation_problem(field_errors(exc.detail))
    if isinstance(exc, ObjectDoesNotExist):  # deleted between the view's read and the service's locked read
        exc = Http404()
    if isinstance(exc, ChainBroken):
        return problem(503, str(exc))
    response = exception_handler(exc, context)  # DRF's: the status, WWW-Authenticate, Retry-After, Allow
    if response is None:
        return None
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else str(response.data)
    if response.status_code == status.HTTP_404_NOT_FOUND and not isinstance(exc, exceptions.NotFound):
        detail = "no such object"  # Django's Http404 text would name the model and lookup
    out = problem(response.status_code, str(detail))
    for name, value in response.items():
        if name.lower() in ("www-authenticate", "retry-after", "allow"):
            out[name] = value
    return out
