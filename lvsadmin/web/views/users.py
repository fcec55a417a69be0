"""Users, for admins: list, create with a role, change the role, deactivate or reactivate, lift a lock-out."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.urls import reverse

from lvsadmin.core import users, versions

from ..forms import UnlockForm, UserCreateForm, UserEditForm
from ..pages import redirect, render_page
from ..roles import ADMIN, policy
from .common import actor, form_round_trip

User = get_user_model()


@policy(read=ADMIN, write=ADMIN)
def user_list(request):
    if request.method == "POST":
        return _unlock(request)
    groups = Prefetch("groups", queryset=Group.objects.filter(name__in=users.ROLES))
    people = list(User.objects.order_by("username").prefetch_related(groups))
    for user in people:
        user.role = users.stored_role(user) or "—"
    return render_page(request, "web/users.html", {"users": people, "lockouts": users.lockouts()})


def _unlock(request):
    """POST on the users page: lift a sign-in lock-out (the Unlock buttons of its "Locked out" table)."""
    form = UnlockForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing to unlock: the user name is missing.")
    elif users.unlock(actor(request), username=form.cleaned_data["username"],
                      address=form.cleaned_data["address"] or None):
        messages.success(request, f"Unlocked {form.cleaned_data['username']}: they may sign in again.")
    else:
        messages.info(request, f"{form.cleaned_data['username']} was not locked out (any more).")
    return redirect(request, reverse("users"))


@policy(read=ADMIN, write=ADMIN)
def user_create(request):
    form = UserCreateForm(request.POST or None)

    def save(data):
        try:
            return users.create_user(actor(request), username=data["username"], password=data["password1"],
                                     role=data["role"], email=data.get("email") or "")
        except ValidationError as exc:
            if hasattr(exc, "error_dict") and "password" in exc.error_dict:
                exc.error_dict["password1"] = exc.error_dict.pop("password")
            raise

    return form_round_trip(request, form, save, template="web/user_form.html", context={"edited": None},
                           success_url=reverse("users"), success_message=lambda u: f"Created user {u}.")


@policy(read=ADMIN, write=ADMIN)
def user_edit(request, pk):
    edited = get_object_or_404(User, pk=pk)
    form = UserEditForm(request.POST or None, initial={"role": users.stored_role(edited) or "viewer",
                                                       "is_active": edited.is_active},
                        version=versions.version_of(edited))

    def save(data):
        return users.update_user(actor(request), edited, role=data["role"], is_active=data["is_active"],
                                 expected_version=data["version"])

    return form_round_trip(request, form, save, template="web/user_form.html", context={"edited": edited},
                           success_url=reverse("users"), success_message=lambda u: f"Saved user {u}.")
