"""What the views share: the edit-form round trip, the delete confirmation, and the review of a change to a
cluster's table (preview, confirm at the revision previewed, 409 when it moved on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import ValidationError

from lvsadmin.audit.log import Actor
from lvsadmin.core.models import Cluster
from lvsadmin.core.services import StalePlan
from lvsadmin.core.versions import StaleEdit, shown

from ..forms import bind_errors
from ..pages import redirect, render_page


def actor(request) -> Actor:
    return Actor.from_request(request)


def form_round_trip(request, form, save: Callable, *, template: str, context: dict, success_url: Callable | str,
                    success_message: str | Callable = ""):
    """GET: the form. POST: parse, call `save(cleaned_data)` (a service function), redirect; or re-render the
    form with the errors next to their fields (422; for HTMX only the `form` partial). A save refused as stale
    (the object changed since the form was loaded) is a 409: what changed, and the form again on the current
    values to apply the edit anew."""
    if request.method == "POST" and form.is_valid():
        try:
            obj = save(form.cleaned_data)
        except StaleEdit as exc:
            context = dict(context, stale=stale_report(exc, form.cleaned_data))
            return render_page(request, template, dict(context, form=form.fresh()), fragments=("form",),
                               status=409)
        except ValidationError as exc:
            bind_errors(form, exc)
        else:
            message = success_message(obj) if callable(success_message) else success_message
            if message:
                messages.success(request, message)
            return redirect(request, success_url(obj) if callable(success_url) else success_url)
    status = 422 if form.is_bound and form.errors else 200
    return render_page(request, template, dict(context, form=form), fragments=("form",), status=status)


def stale_report(exc: StaleEdit, submitted: dict) -> dict:
    """What the "changed since you opened it" box shows: each changed field (as loaded → now), and the values
    of the refused form that differ from what it was loaded with, to apply again."""
    current = exc.current or {}
    base = exc.loaded if exc.loaded is not None else current
    yours = [(name, shown(value)) for name, value in submitted.items()
             if name in current and shown(value) != shown(base.get(name))]
    return {"known": exc.changes is not None, "yours": yours,
            "changes": [(c.field, shown(c.loaded), shown(c.current)) for c in exc.changes or []]}


def confirm_delete(request, *, obj_label: str, consequences: list[str], delete: Callable[[str], object],
                   version: str, success_url: str, cancel_url: str, blocked: str = ""):
    """GET: ask, with the version of what is shown. POST: `delete(expected_version)` through the service layer
    and go on; a refusal is shown on the same page (409), a change since the page was opened with what changed
    and the page's new version, to confirm again."""
    error = blocked
    if request.method == "POST" and not blocked:
        try:
            delete(request.POST.get("version", ""))
        except StaleEdit as exc:
            error = (f"Not deleted: {obj_label} was changed by someone else since you opened this page "
                     f"({exc.summary()}). Check it again, then confirm.")
            version = exc.version
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Deleted {obj_label}.")
            return redirect(request, success_url)
    context = {"obj_label": obj_label, "consequences": consequences, "cancel_url": cancel_url, "error": error,
               "version": version, "can_delete": not blocked}
    return render_page(request, "web/confirm_delete.html", context, status=409 if error else 200)


@dataclass
class Review:
    """How a confirmation went, for the page that shows the preview again."""

    status: int = 200
    error: str = ""  # why it was refused (422), when not next to a field
    stale: StalePlan | None = None  # 409: the revision reviewed and the cluster's now


def review_round_trip(request, cluster: Cluster, form, *, preview: Callable[[dict | None], dict],
                      commit: Callable[[dict, dict], object], confirm: bool, initial: Callable[[dict | None], dict],
                      template: str, context: dict, success_url: str, missing: str = "",
                      refusals_on: str | None = None, fragments: tuple[str, ...] = ()):
    """A change to the cluster's table, reviewed before it is made: the plan, an import, the console, a restore.

    `preview(data)` is what the page shows, computed on the cluster as it is now (`data`: the form's cleaned data;
    None on a GET or when the form is refused). A POST that confirms calls `commit(data, shown)`, which writes
    through the service layer and says what it did (a message); the service compares the revision reviewed
    with the cluster's under its row lock and raises StalePlan when it moved on: a 409, with the preview
    computed anew at the new revision, to confirm again. A ValidationError (from the preview or the commit) is
    a 422 saying why, next to the field `refusals_on` or as `error`; a form refused as sent (no revision) says
    `missing`. The context has the preview, `revision` (the cluster's, that the preview was computed at),
    `error` and `stale`; the page's form is a fresh one on `initial(data)` (which carries that revision),
    except a form with errors, shown as it was sent.
    """
    posted = request.method == "POST"
    data = dict(form.cleaned_data) if posted and form.is_valid() else None
    review = Review(422, missing) if posted and data is None else Review()

    def refuse(exc: ValidationError):
        message = " ".join(exc.messages)
        if refusals_on:
            form.add_error(refusals_on, message)
        else:
            review.status, review.error = 422, message

    def show() -> dict:
        try:
            return preview(data)
        except ValidationError as exc:
            refuse(exc)
            return {}

    showing = show()
    if confirm and data is not None and review.status == 200 and not form.errors:
        try:
            commit(data, showing)
        except StalePlan as exc:
            review.status, review.stale = 409, exc
            cluster.refresh_from_db()
            showing = show()
        except ValidationError as exc:
            refuse(exc)
        else:
            return redirect(request, success_url)
    if not form.errors:
        form = type(form)(initial=initial(data))
    context = dict(context, **showing, form=form, revision=cluster.desired_revision, error=review.error,
                   stale=review.stale)
    return render_page(request, template, context, status=422 if form.errors else review.status,
                       fragments=fragments)
