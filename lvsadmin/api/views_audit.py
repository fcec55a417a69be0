"""The audit log over the API: the audit page's filters (web.forms.AuditFilterForm read by web.tables.AuditLog,
one definition of each) and its keyset pages, newest first.

The log only grows, so pages go by record id (`cursor`: records older than it), never by offset: a page costs
the same queries whatever its depth, and records written meanwhile do not shift the pages already read.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.web.forms import AuditFilterForm
from lvsadmin.web.tables import AuditLog, KeysetPage, record_diff

from .pagination import MAX_LIMIT, Pagination, limit_of
from .serializers_records import AuditPageSerializer, AuditRecordDetailSerializer, AuditRecordSerializer
from .views import Endpoint, problems

PAGE_ONLY = ("before", "after")  # the page's own paging fields: here `cursor` alone pages


def _text(name: str, description: str = "") -> OpenApiParameter:
    """A text filter with the form field's bounds (a value past them is a 422), so the schema says them."""
    schema = {"type": "string", "maxLength": AuditFilterForm.base_fields[name].max_length, "pattern": "^[^\\x00]*$"}
    return OpenApiParameter(name, schema, description=description)


FILTERS = [
    _text("user", "who (the user name as it was then)"),
    _text("cluster", "the cluster's name"),
    _text("object_type", "virtualservice, realserver, balancer, backup …"),
    OpenApiParameter("object_id", OpenApiTypes.INT),
    _text("object", "the object's name starts with this (the page's search), e.g. `TCP 10.0.0.1`"),
    OpenApiParameter("action", OpenApiTypes.STR, enum=ChangeRecord.Action.values),
    _text("request_id", "every record of one request (X-Request-ID)"),
    OpenApiParameter("since", OpenApiTypes.DATE, description="from this day on (UTC)"),
    OpenApiParameter("until", OpenApiTypes.DATE, description="up to and including this day (UTC)"),
    OpenApiParameter("cursor", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                     description="records older than this id: the `next` link's"),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                     description=f"1..{MAX_LIMIT}, {Pagination.default_limit} by default"),
]


def audit_log(params) -> tuple[AuditLog, int | None]:
    """The page's filters from the query string, and the cursor; a bad value is a 422 naming the parameter."""
    data = {k: v for k, v in params.items() if k in AuditFilterForm.base_fields and k not in PAGE_ONLY}
    cursor = params.get("cursor")
    if cursor is not None:
        data["before"] = cursor
    form = AuditFilterForm(data)
    if not form.is_valid():
        errors = {("cursor" if k == "before" else k): v for k, v in form.errors.items()}
        raise exceptions.ValidationError(errors)
    return AuditLog(form), form.cleaned_data.get("before")


class AuditList(Endpoint):
    """GET: audit records, newest first, filtered as on the audit page; `next` is the older page."""

    @extend_schema(operation_id="audit_list", parameters=FILTERS, responses={200: AuditPageSerializer,
                                                                            **problems(422)})
    def get(self, request):
        log, cursor = audit_log(request.query_params)
        page = KeysetPage.of(log.queryset(), limit_of(request), before=cursor)
        next_url = None
        if page.older is not None:
            query = request.query_params.copy()
            query["cursor"] = str(page.older)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"next": next_url, "results": AuditRecordSerializer(page.rows, many=True).data})


@extend_schema(responses={200: AuditRecordDetailSerializer, **problems(404)})
class AuditDetail(Endpoint):
    """GET: one record, with the object before and after and the change field by field."""

    def get(self, request, pk):
        record = ChangeRecord.objects.filter(pk=pk).first() if pk < 2**63 else None
        if record is None:
            raise exceptions.NotFound(f"no audit record {pk}")
        record.changes = record_diff(record)
        return Response(AuditRecordDetailSerializer(record).data)
