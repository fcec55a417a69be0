"""Lists page with `limit` (1..1000, 100 by default) and `offset`; a value out of range is a 422 naming the
parameter, not a silent default (nor a number too large for the database)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = MAX_LIMIT

    def get_limit(self, request):
        return limit_of(request, self.default_limit)

    def get_offset(self, request):
        return self._number(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def get_schema_operation_parameters(self, view):
        """The schema states the bounds the lists enforce, so a client (or schemathesis) knows them."""
        bounds = {self.limit_query_param: (1, MAX_LIMIT), self.offset_query_param: (0, MAX_OFFSET)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters

    @staticmethod
    def _number(request, name: str, low: int, high: int, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise exceptions.ValidationError({name: [f"{name} must be {low}..{high}"]})
        return int(raw)


def limit_of(request, default: int = Pagination.default_limit) -> int:
    """`limit` as every list takes it (the keyset lists too, which have no offset)."""
    return Pagination._number(request, "limit", 1, MAX_LIMIT, default)
