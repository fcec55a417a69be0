"""ipvsadm's language over the API: `-S -n` and `-Ln` of a cluster's desired state as text, and its edits.

Everything runs through `manage.py ipvsadm`'s own Command (the same reading of the line, the same messages, the
same output bytes, the same service layer and audit), with the token's user as the actor ("via API"). Several
lines at once are the panel's console: applied in order to the desired table, written as one change.
"""

from __future__ import annotations

import io

from django.db import transaction
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from lvsadmin.core.management.commands import ipvsadm
from lvsadmin.core.models import Cluster
from lvsadmin.core.services import StalePlan
from lvsadmin.ipvs import rules
from lvsadmin.web.views.tables import apply_commands

from .problems import problem
from .views import Endpoint, actor, problems

MAX_COMMANDS = 1_000_000  # characters: a whole table of 100,000 lines fits


class Run(ipvsadm.Command):
    """manage.py ipvsadm, its output kept, its actor the request's."""

    def __init__(self, request, stdin: str = ""):
        self.out = io.StringIO()
        super().__init__(stdout=self.out, stderr=io.StringIO())
        self.request, self.stdin = request, io.StringIO(stdin)

    def _actor(self, username: str, comment: str):
        return actor(self.request)

    def line(self, cluster: str, words: list[str], dry_run: bool = False) -> str:
        self.handle(cluster=cluster, create=False, user="", dry_run=dry_run, comment="", ipvsadm=words)
        return self.out.getvalue()

    def lines(self, cluster: Cluster, text: str, dry_run: bool) -> str:
        """Several command lines, as the console takes them; a refused line is named by its number."""
        with transaction.atomic():
            try:
                table = apply_commands(cluster, text)
            except rules.ParseError as exc:
                raise ipvsadm.BadInput(str(exc)) from None
            self._replace(actor(self.request), cluster, lambda: table, dry_run, "command", text)
            if dry_run:
                transaction.set_rollback(True)
        return self.out.getvalue()


def bad_input(exc: ipvsadm.BadInput) -> Response:
    return problem(422, str(exc), errors={"commands": [str(exc)]})


def _cluster(name: str) -> Cluster:
    cluster = Cluster.objects.filter(name=name).first()
    if cluster is None:
        raise exceptions.NotFound(f"no cluster named {name!r}")
    return cluster


ARG = OpenApiParameter("arg", OpenApiTypes.STR, many=True,
                       description="ipvsadm's words, one per `arg` (e.g. arg=-L&arg=-n&arg=--stats).")


class Listing(Endpoint):
    """GET: the text manage.py ipvsadm prints for the words given (`arg`, repeated), by default `default`."""

    kind = ""
    default: tuple[str, ...] = ()

    def get(self, request, name):
        cluster = _cluster(name)
        words = request.query_params.getlist("arg") or list(self.default)
        try:
            if ipvsadm.read_command_line(words).kind != self.kind:
                raise ipvsadm.BadInput(f"this endpoint answers ipvsadm's {self.kind} command ({self.default[0]})")
            text = Run(request).line(cluster.name, words)
        except ipvsadm.BadInput as exc:
            return problem(422, str(exc), errors={"arg": [str(exc)]})
        return HttpResponse(text, content_type="text/plain; charset=utf-8")


@extend_schema(parameters=[ARG], responses={(200, "text/plain"): OpenApiTypes.STR, **problems(404, 422)})
class Save(Listing):
    kind, default = "save", ("-S", "-n")


@extend_schema(parameters=[ARG], responses={(200, "text/plain"): OpenApiTypes.STR, **problems(404, 422)})
class List(Listing):
    kind, default = "list", ("-L", "-n")


def _body(request) -> dict:
    body = request.data
    if not isinstance(body, dict):
        raise exceptions.ValidationError({"non_field_errors": ["a JSON object: commands (or argv), dry_run, revision"]})
    errors = {}
    argv, commands = body.get("argv"), body.get("commands")
    if (argv is None) == (commands is None) and not (body.get("restore") is True and commands is not None):
        errors["commands"] = ["send the ipvsadm lines in `commands` (or one line's words in `argv`)"]
    elif argv is not None and not (isinstance(argv, list) and argv and all(isinstance(w, str) for w in argv)):
        errors["argv"] = ["a list of words, as on a command line"]
    elif commands is not None and not isinstance(commands, str):
        errors["commands"] = ["ipvsadm command lines, as text"]
    elif commands is not None and len(commands) > MAX_COMMANDS:
        errors["commands"] = [f"at most {MAX_COMMANDS} characters"]
    for flag in ("dry_run", "restore"):
        if not isinstance(body.get(flag, False), bool):
            errors[flag] = ["true or false"]
    revision = body.get("revision")
    if revision is not None and (type(revision) is not int or revision < 0):
        errors["revision"] = ["the desired revision the change is based on (a whole number), or null"]
    if errors:
        raise exceptions.ValidationError(errors)
    return body


@extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT, **problems(404, 409, 422)})
class Commands(Endpoint):
    """POST {"commands": "ipvsadm lines", "dry_run": false, "revision": N}: edit the desired state.

    `restore: true`: `commands` is a save that replaces the whole table (ipvsadm -R). `argv`: one command line's
    words instead of `commands`. `revision` (optional): refused with 409 unless the desired state is still at it.
    The answer's `output` is what manage.py ipvsadm prints for the same input.
    """

    write_scope = "write"

    def post(self, request, name):
        body = _body(request)
        run, dry_run = Run(request), body.get("dry_run", False)
        try:
            with transaction.atomic():
                cluster = Cluster.objects.select_for_update().filter(name=name).first()
                if cluster is None:
                    raise exceptions.NotFound(f"no cluster named {name!r}")
                revision = body.get("revision")
                if revision is not None and revision != cluster.desired_revision:
                    raise StalePlan(revision, cluster.desired_revision)
                output = self._run(run, cluster, body, dry_run)
        except ipvsadm.BadInput as exc:
            return bad_input(exc)
        except StalePlan as exc:
            return problem(409, str(exc), revision=exc.current)
        cluster.refresh_from_db()
        return Response({"output": output, "dry_run": dry_run, "revision": cluster.desired_revision})

    @staticmethod
    def _run(run: Run, cluster: Cluster, body: dict, dry_run: bool) -> str:
        if body.get("restore"):
            run.stdin = io.StringIO(body.get("commands") or "")
            words = body.get("argv") or ["-R"]  # -R's line as typed: ipvsadm refuses any option with it
            if ipvsadm.read_command_line(words).kind != "restore":
                raise ipvsadm.BadInput("restore: true takes -R (and the save in `commands`)")
            return run.line(cluster.name, words, dry_run)
        if body.get("argv") is not None:
            words = body["argv"]
        else:
            lines = [words for line in body["commands"].splitlines() if (words := rules.split_line(line))]
            if len(lines) != 1:  # none (refused by the console's reading too) or several: the console's way
                return run.lines(cluster, body["commands"], dry_run)
            words = lines[0]
        if ipvsadm.read_command_line(words).kind != "edit":
            raise ipvsadm.BadInput("only editing commands here (-A -E -D -C -a -e -d --set): GET list/ and save/ "
                                   "for the listings, restore: true for -R")
        return run.line(cluster.name, words, dry_run)
