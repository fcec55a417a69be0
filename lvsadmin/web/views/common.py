"""What the views share: the edit-form round trip and the delete confirmation."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError

from lvsadmin.audit.log import Actor

from ..forms import bind_errors
from ..pages import redirect, render_page


def actor(request) -> Actor:
    return Actor.from_request(request)


def form_round_trip(request, form, save: Callable, *, template: str, context: dict, success_url: Callable | str,
                    success_message: str | Callable = ""):
    """GET: the form. POST: parse, call `save(cleaned_data)` (a service function), redirect; or re-render the
    form with the errors next to their fields (422; for HTMX only the `form` partial)."""
    if request.method == "POST" and form.is_valid():
        try:
            obj = save(form.cleaned_data)
        except ValidationError as exc:
            bind_errors(form, exc)
        else:
            message = success_message(obj) if callable(success_message) else success_message
            if message:
                messages.success(request, message)
            return redirect(request, success_url(obj) if callable(success_url) else success_url)
    status = 422 if form.is_bound and form.errors else 200
    return render_page(request, template, dict(context, form=form), fragments=("form",), status=status)


def confirm_delete(request, *, obj_label: str, consequences: list[str], delete: Callable, success_url: str,
                   cancel_url: str, blocked: str = ""):
    """GET: ask. POST: delete through the service layer and go on; a refusal is shown on the same page."""
    error = blocked
    if request.method == "POST" and not blocked:
        try:
            delete()
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Deleted {obj_label}.")
            return redirect(request, success_url)
    context = {"obj_label": obj_label, "consequences": consequences, "cancel_url": cancel_url, "error": error}
    return render_page(request, "web/confirm_delete.html", context, status=409 if error else 200)
