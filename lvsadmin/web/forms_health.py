"""Forms of health definitions (a service's check, a real server's override, a service's policy), and how the
service page puts a check and a policy in words.

The forms only parse: every rule is lvsadmin.health.validate's, applied by core.services.health, and what it
refuses comes back next to the field (`bind_errors`). An empty box means the default, which its placeholder
shows. The check form shows every kind's fields; the stylesheet hides those of the kinds not chosen, and the
service layer ignores them (`other_kinds="ignore"`).
"""

from __future__ import annotations

from dataclasses import asdict

from django import forms

from lvsadmin.core.services.health import INHERIT
from lvsadmin.health.spec import DNS_TYPES, HTTP_METHODS, KINDS, NO_CHECK, ON_FAILURE, Check, Policy
from lvsadmin.health.validate import COMMON_FIELDS, INTERVAL, KIND_FIELDS
from lvsadmin.ipvs.model import FORWARDS

from .forms import VersionedForm

ON_FAILURE_LABELS = {"inhibit": "inhibit: weight 0, connections kept", "remove": "remove from the table"}
KIND_LABELS = {"tcp": "TCP connect", "http": "HTTP", "https": "HTTPS", "dns": "DNS query",
               "misc": "MISC (a command on the balancer)"}
# The groups of the check form: the fields every kind reads, then each kind's own (CSS shows the chosen one's).
GROUPS = (("Every check", KINDS, COMMON_FIELDS[1:]), ("HTTP and HTTPS", ("http", "https"), KIND_FIELDS["http"]),
          ("HTTPS", ("https",), ("verify_tls",)), ("DNS", ("dns",), KIND_FIELDS["dns"]),
          ("MISC", ("misc",), KIND_FIELDS["misc"]))
DEFAULT_CHECK, DEFAULT_POLICY = Check(), Policy()


def _number(label: str, default, *, step: str = "1", help_text: str = "", low=0, high=None) -> forms.CharField:
    attrs = {"step": step, "min": low, "placeholder": _plain(default), "inputmode": "decimal"}
    if high is not None:
        attrs["max"] = high
    return forms.CharField(label=label, required=False, help_text=help_text, widget=forms.NumberInput(attrs=attrs))


def _text(label: str, default: str = "", *, help_text: str = "", placeholder: str = "", wide: bool = False):
    attrs = {"placeholder": placeholder or default, "spellcheck": "false", "autocapitalize": "off"}
    if wide:
        attrs["size"] = 60
    return forms.CharField(label=label, required=False, help_text=help_text, strip=False,
                           widget=forms.TextInput(attrs=attrs))


def _plain(value) -> str:
    """A number as people write it: 5, not 5.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class CheckForm(VersionedForm, forms.Form):
    """A service's check (kind "none": no check), or with `override=True` a real server's ("inherit": its
    service's check, "none": no check for this server)."""

    kind = forms.ChoiceField(label="Check", choices=())
    port = _number("Port", DEFAULT_CHECK.port, help_text="0 or empty: the real server's own port", high=65535)
    interval = _number("Interval", DEFAULT_CHECK.interval, step="any", low=INTERVAL.low, high=INTERVAL.high,
                       help_text="seconds between two probes")
    timeout = _number("Timeout", DEFAULT_CHECK.timeout, step="any", help_text="seconds; at most the interval")
    fall = _number("Fall", DEFAULT_CHECK.fall, low=1, high=100, help_text="failures in a row that take it down")
    rise = _number("Rise", DEFAULT_CHECK.rise, low=1, high=100, help_text="successes in a row that bring it back")
    source = _text("Source address", placeholder="the kernel's choice")
    method = forms.ChoiceField(label="Method", choices=[(m, m) for m in HTTP_METHODS], required=False,
                               initial=DEFAULT_CHECK.method)
    path = _text("Path", DEFAULT_CHECK.path, wide=True)
    host = _text("Host header", placeholder="the server's address", help_text="and the TLS server name (SNI)")
    expect = _text("Expected status", DEFAULT_CHECK.expect, help_text="codes and ranges, such as 200-299,301")
    body = _text("Body matches", placeholder="any body", help_text="a regular expression", wide=True)
    verify_tls = forms.BooleanField(label="Verify the TLS certificate", required=False,
                                    initial=DEFAULT_CHECK.verify_tls)
    query = _text("Query name", placeholder="example.org")
    qtype = forms.ChoiceField(label="Query type", choices=[(t, t) for t in DNS_TYPES], required=False,
                              initial=DEFAULT_CHECK.qtype)
    command = _text("Command", placeholder="/usr/local/bin/check {address} {port}", wide=True,
                    help_text="run on the balancer: exit 0 up, 1 down; {address} and {port} are replaced")
    dynamic = forms.BooleanField(label="Dynamic weight (exit 2..255 sets the weight to exit − 2)", required=False)

    def __init__(self, *args, override: bool = False, check: Check | None = None, inherited: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.loaded = {"override": override, "check": check, "inherited": inherited}
        off = [(INHERIT, "Inherit the service's check"), (NO_CHECK, "No check of this server")] if override \
            else [(NO_CHECK, "No check")]
        self.fields["kind"].choices = off + [(k, KIND_LABELS[k]) for k in KINDS]
        if check is not None:
            self.initial.update({k: _plain(v) if isinstance(v, float) else v for k, v in asdict(check).items()})
        self.initial["kind"] = check.kind if check else (INHERIT if inherited else NO_CHECK)

    def fresh(self):
        return type(self)(version=self.fields["version"].initial, **self.loaded)

    def groups(self) -> list[tuple[str, str, list]]:
        """(legend, CSS classes naming the kinds that read them, bound fields) for the template."""
        return [(legend, " ".join(f"k-{k}" for k in kinds), [self[name] for name in names])
                for legend, kinds, names in GROUPS]

    def check_values(self) -> dict | str | None:
        """What the service layer is given: the values typed (empty boxes left out: the defaults), NO_CHECK, or
        None for inherit."""
        data = self.cleaned_data
        if data["kind"] == INHERIT:
            return None
        if data["kind"] == NO_CHECK:
            return NO_CHECK
        return {name: value for name, value in data.items() if name != "version" and value not in ("", None)}


class PolicyForm(VersionedForm, forms.Form):
    on_failure = forms.ChoiceField(label="On failure", choices=[(k, ON_FAILURE_LABELS[k]) for k in ON_FAILURE],
                                   required=False)
    quorum = _number("Quorum", DEFAULT_POLICY.quorum,
                     help_text="the healthy servers' weights the service needs; 0: none")
    hysteresis = _number("Hysteresis", DEFAULT_POLICY.hysteresis,
                         help_text="lost below quorum − this, back above quorum + this")
    sorry_server = _text("Sorry server", placeholder="ADDRESS:PORT", help_text="in the table only while quorum is lost")
    sorry_forward = forms.ChoiceField(label="Sorry server forwarding", choices=[(f, f) for f in FORWARDS],
                                      required=False, initial=DEFAULT_POLICY.sorry_forward)
    max_down_share = _number("Never take down more than", DEFAULT_POLICY.max_down_share, step="0.05", high=1,
                             help_text="a share of the servers (fail-open): 0.5 is half, 1 is all")
    slow_start = _number("Slow start", DEFAULT_POLICY.slow_start, high=3600,
                         help_text="seconds a server that came back takes to ramp up to its weight")
    start_down = forms.BooleanField(label="Servers start down until they pass their rise checks", required=False)

    def __init__(self, *args, policy: Policy | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy = policy
        if policy is not None:
            self.initial.update({k: _plain(v) for k, v in asdict(policy).items() if not isinstance(v, bool)})
            self.initial["start_down"] = policy.start_down

    def fresh(self):
        return type(self)(version=self.fields["version"].initial, policy=self.policy)

    def policy_values(self) -> dict:
        return {name: value for name, value in self.cleaned_data.items()
                if name != "version" and value not in ("", None)}


# --- in words ---------------------------------------------------------------------------------------------


def check_words(check: Check | None) -> str:
    """ "HTTP GET /health expecting 200-399, every 5 s, timeout 2 s, down after 3, up after 2"."""
    if check is None:
        return "no check"
    if check.kind == "tcp":
        what = "TCP connect" + (f" to port {check.port}" if check.port else "")
    elif check.kind in ("http", "https"):
        what = f"{check.kind.upper()} {check.method} {check.path} expecting {check.expect}"
        what += f" from host {check.host}" if check.host else ""
        what += f", body matching {check.body}" if check.body else ""
        what += ", certificate not verified" if check.kind == "https" and not check.verify_tls else ""
        what += f" on port {check.port}" if check.port else ""
    elif check.kind == "dns":
        what = f"DNS {check.qtype} query for {check.query}" + (f" on port {check.port}" if check.port else "")
    else:
        what = f"command {check.command}" + (" (dynamic weight)" if check.dynamic else "")
    timing = (f"every {_plain(check.interval)} s, timeout {_plain(check.timeout)} s, down after {check.fall}, "
              f"up after {check.rise}")
    return f"{what}, {timing}" + (f", from {check.source}" if check.source else "")


def policy_words(policy: Policy) -> list[str]:
    """The policy as short phrases, one per setting that says something."""
    words = ["a failed server is " + ("held at weight 0, keeping its connections" if policy.on_failure == "inhibit"
                                      else "removed from the table")]
    if policy.quorum:
        words.append(f"quorum {policy.quorum} of healthy weight" +
                     (f" (hysteresis {policy.hysteresis})" if policy.hysteresis else ""))
    if policy.sorry_server:
        words.append(f"sorry server {policy.sorry_server} ({policy.sorry_forward}) while quorum is lost")
    if policy.max_down_share < 1:
        words.append(f"never more than {policy.max_down_share:.0%} of the servers taken down")
    if policy.slow_start:
        words.append(f"a server that comes back ramps up over {policy.slow_start} s")
    if policy.start_down:
        words.append("servers start down until they pass their rise checks")
    return words
