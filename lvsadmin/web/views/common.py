"""What the views share: the edit-form round trip and the delete confirmation."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError

from lvsadmin.audit.log import Actor
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
