"""The long lists of the panel as classes: filtering, sorting and paging in a constant number of queries.

- ServiceTable: a cluster's virtual services; offset pages over one cluster (its count is cheap), the
  real-server count per row from a correlated subquery, evaluated only for the rows shown.
- KeysetPage: newest-first pages by id (`id < cursor`) for tables that grow without bound (the audit log,
  apply reports): no OFFSET, no COUNT.
- AuditLog: the audit log's filters over KeysetPage, and each record's field-level diff.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from lvsadmin.audit.models import ChangeRecord
from lvsadmin.core.models import Cluster, RealServer, VirtualService

from . import live


class ServiceTable:
    per_page = 50
    # (sort key or None, label, numeric)
    columns = (("protocol", "Prot", False), ("address", "Virtual address", False), ("port", "Port", True),
               ("scheduler", "Sched", False), (None, "Flags", False), ("name", "Name", False),
               ("servers", "Servers", True), (None, "Health", False), (None, "ActiveConn", True),
               (None, "InActConn", True), (None, "Conn/s", True), (None, "Bytes/s", True))

    def __init__(self, cluster: Cluster, form, per_page: int | None = None):
        self.cluster = cluster
        self.form = form
        self.data = form.cleaned_data if form.is_valid() else {}
        self.per_page = per_page or self.per_page
        self.ordering = form.ordering()
        self.sort = self.data.get("sort") or "position"

    def headers(self) -> list[dict]:
        out = []
        for key, label, num in self.columns:
            state = "asc" if self.sort == key else "desc" if key and self.sort == "-" + key else ""
            out.append({"key": key, "label": label, "num": num, "state": state,
                        "next": ("-" + key if state == "asc" else key) if key else None})
        return out

    def queryset(self):
        qs = VirtualService.objects.filter(cluster=self.cluster)
        d = self.data
        if d.get("protocol"):
            qs = qs.filter(protocol=d["protocol"])
        if d.get("scheduler"):
            qs = qs.filter(scheduler=d["scheduler"])
        if d.get("address"):
            qs = qs.filter(address__startswith=d["address"].strip())
        q = (d.get("q") or "").strip()
        if q:
            cond = Q(name__icontains=q) | Q(address__startswith=q) | Q(description__icontains=q)
            if q.isdigit():
                cond |= Q(port=int(q)) | Q(fwmark=int(q))
            qs = qs.filter(cond)
        rs_count = (RealServer.objects.filter(service=OuterRef("pk")).order_by().values("service")
                    .annotate(n=Count("pk")).values("n"))
        qs = qs.annotate(rs_count=Coalesce(Subquery(rs_count, output_field=IntegerField()), 0))
        return qs.order_by(*self.ordering)

    def page(self):
        paginator = Paginator(self.queryset(), self.per_page)
        self.page_obj = paginator.get_page(self.data.get("page") or 1)
        self.rows = list(self.page_obj.object_list)
        return self.page_obj

    def counters(self) -> dict[int, live.ServiceCounters]:
        return live.service_counters(self.cluster.pk, self.rows)

    def filtered(self) -> bool:
        return any(self.data.get(k) for k in ("q", "protocol", "scheduler", "address"))


@dataclass
class KeysetPage:
    """Newest first by id. `before`: rows with id < before; `after`: the page just newer than id `after`."""

    rows: list
    newer: int | None = None  # pass as ?after=
    older: int | None = None  # pass as ?before=
    first: bool = True

    @classmethod
    def of(cls, queryset, per_page: int, before: int | None = None, after: int | None = None) -> KeysetPage:
        if after is not None and before is None:
            rows = list(queryset.filter(id__gt=after).order_by("id")[: per_page + 1])
            more_newer = len(rows) > per_page
            rows = rows[:per_page][::-1]
            return cls(rows=rows, newer=rows[0].id if rows and more_newer else None,
                       older=rows[-1].id if rows else None, first=not more_newer)
        qs = queryset.order_by("-id")
        if before is not None:
            qs = qs.filter(id__lt=before)
        rows = list(qs[: per_page + 1])
        more_older = len(rows) > per_page
        rows = rows[:per_page]
        return cls(rows=rows, newer=rows[0].id if rows and before is not None else None,
                   older=rows[-1].id if rows and more_older else None, first=before is None)


@dataclass
class FieldChange:
    name: str
    before: object = None
    after: object = None
    kind: str = "changed"  # changed | added | removed


@dataclass
class AuditRow:
    record: ChangeRecord
    changes: list[FieldChange] = field(default_factory=list)


HIDDEN_DIFF_KEYS = {"source"}


class Diff(list):
    """Field changes; `mode` says how to show them: "changes" (before → after), "added" or "removed" (values)."""

    @property
    def mode(self) -> str:
        kinds = {c.kind for c in self}
        if kinds == {"added"}:
            return "added"
        if kinds == {"removed"}:
            return "removed"
        return "changes"


def record_diff(rec: ChangeRecord) -> Diff:
    """Field-level before/after of one record; for creates and deletes, every field it had."""
    before = rec.before if isinstance(rec.before, dict) else ({} if rec.before is None else {"value": rec.before})
    after = rec.after if isinstance(rec.after, dict) else ({} if rec.after is None else {"value": rec.after})
    out = Diff()
    for name in list(before) + [k for k in after if k not in before]:
        if name in HIDDEN_DIFF_KEYS:
            continue
        b, a = before.get(name), after.get(name)
        if name in before and name in after:
            if b != a:
                out.append(FieldChange(name, b, a, "changed"))
        elif name in after:
            out.append(FieldChange(name, None, a, "added"))
        else:
            out.append(FieldChange(name, b, None, "removed"))
    return out


class AuditLog:
    per_page = 50

    def __init__(self, form, per_page: int | None = None):
        self.form = form
        self.data = form.cleaned_data if form.is_valid() else {}
        self.per_page = per_page or self.per_page

    def queryset(self):
        qs = ChangeRecord.objects.all()
        d = self.data
        if d.get("user"):
            qs = qs.filter(username=d["user"])
        if d.get("cluster"):
            cluster_id = Cluster.objects.filter(name=d["cluster"]).values_list("pk", flat=True).first()
            qs = qs.filter(cluster_id=cluster_id) if cluster_id else qs.filter(cluster_name=d["cluster"])
        if d.get("object_type"):
            qs = qs.filter(object_type=d["object_type"])
        if d.get("object_id") is not None:
            qs = qs.filter(object_id=d["object_id"])
        if d.get("object"):
            qs = qs.filter(object_repr__startswith=d["object"])
        if d.get("action"):
            qs = qs.filter(action=d["action"])
        if d.get("request_id"):
            qs = qs.filter(request_id=d["request_id"])
        if d.get("since"):
            qs = qs.filter(time__gte=_midnight(d["since"]))
        if d.get("until") and d["until"] < dt.date.max:  # up to the last day there is: no bound (nor overflow)
            qs = qs.filter(time__lt=_midnight(d["until"] + dt.timedelta(days=1)))
        return qs

    def page(self) -> KeysetPage:
        page = KeysetPage.of(self.queryset(), self.per_page, self.data.get("before"), self.data.get("after"))
        page.rows = [AuditRow(rec, record_diff(rec)) for rec in page.rows]
        return page

    def iterate(self, chunk: int = 2000):
        """Every matching record, newest first, in keyset chunks (for the CSV export)."""
        qs = self.queryset().order_by("-id")
        cursor = None
        while True:
            batch = list((qs.filter(id__lt=cursor) if cursor else qs)[:chunk])
            if not batch:
                return
            yield from batch
            cursor = batch[-1].id

    def filtered(self) -> bool:
        return any(self.data.get(k) not in (None, "") for k in (
            "user", "cluster", "object_type", "object_id", "object", "action", "request_id", "since", "until"))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
