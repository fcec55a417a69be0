"""The audit log: filtered keyset pages with field-level diffs, a streaming CSV export, chain verification."""

from __future__ import annotations

import csv
import json

from django.http import StreamingHttpResponse
from django.utils import timezone

from lvsadmin.audit.log import verify_chain

from ..formats import utc
from ..forms import AuditFilterForm
from ..pages import query_without, render_page
from ..roles import ADMIN, policy
from ..tables import AuditLog

CSV_COLUMNS = ("id", "time", "username", "request_id", "action", "object_type", "object_id", "object_repr",
               "cluster_name", "before", "after", "comment", "hash")


@policy()
def audit_log(request):
    form = AuditFilterForm(request.GET)
    log = AuditLog(form)
    page = log.page()
    context = {"form": form, "page": page, "log": log, "filters": query_without(request, "before", "after")}
    return render_page(request, "web/audit.html", context, fragments=("records",))


# OWASP's CSV injection advice: a cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet shows as text: a leading quote before a formula start (the text stays readable)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    def write(self, value):
        return value


def _csv_rows(log: AuditLog):
    writer = csv.writer(_Echo(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(CSV_COLUMNS)
    for rec in log.iterate():
        yield writer.writerow([spreadsheet_safe(cell) for cell in (
            rec.id, utc(rec.time), rec.username, rec.request_id, rec.action, rec.object_type,
            "" if rec.object_id is None else rec.object_id, rec.object_repr, rec.cluster_name,
            "" if rec.before is None else json.dumps(rec.before, sort_keys=True),
            "" if rec.after is None else json.dumps(rec.after, sort_keys=True), rec.comment, rec.hash,
        )])


@policy()
def audit_csv(request):
    log = AuditLog(AuditFilterForm(request.GET))
    response = StreamingHttpResponse(_csv_rows(log), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="lvsadmin-audit-{stamp}.csv"'
    return response


@policy(read=ADMIN)
def audit_verify(request):
    """Recompute the whole hash chain: run on demand only, from a button, and by admins only, since it reads and
    hashes every record (a minute or more on a million records) while holding a web worker."""
    started = timezone.now()
    report = verify_chain()
    elapsed = (timezone.now() - started).total_seconds()
    context = {"report": report, "verified_at": timezone.now(), "elapsed": elapsed}
    return render_page(request, "web/audit_verify.html", context, fragments=("verify",))
