"""What a health check is, and a service's health policy, as both sides of the protocol read and write them.

A snapshot for an agent carries, next to its table, `"health": {service key text: ServiceHealth.to_dict()}` for
every service with a check or a non-default policy. Like every message (lvsadmin.protocol), `from_dict` takes
whatever a peer of any version sends without raising; validation (lvsadmin.health.validate) is the panel's, at
the edge where people type values.

Names follow keepalived and HAProxy where they have one: `fall` failures in a row take a server down, `rise`
successes bring it back (keepalived's `retry`; it has no rise, and brings a server back after one success).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

KINDS = ("tcp", "http", "https", "dns", "misc")
ON_FAILURE = ("inhibit", "remove")  # inhibit: weight 0, connections kept (keepalived's inhibit_on_failure)
DNS_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT")
HTTP_METHODS = ("GET", "HEAD", "POST", "OPTIONS")


@dataclass(frozen=True)
class Check:
    """One check of one real server. The same Check of the same ADDRESS:PORT is probed once, however many
    services use it (`probe_key`)."""

    kind: str = "tcp"
    port: int = 0  # 0: the real server's own port
    interval: float = 5.0  # seconds between the starts of two probes
    timeout: float = 2.0  # seconds a probe may take
    fall: int = 3  # failed probes in a row that take a server down
    rise: int = 2  # successful probes in a row that bring it back up
    source: str = ""  # source address of the probes ("": the kernel's choice)
    # http / https
    method: str = "GET"
    path: str = "/"
    host: str = ""  # Host header, and for https the SNI name ("": the address)
    expect: str = "200-399"  # status codes that mean up: "200", "200-299,301"
    body: str = ""  # a regular expression the body must match ("": any body)
    verify_tls: bool = True
    # dns
    query: str = ""  # the name asked
    qtype: str = "A"
    # misc: a command run on the balancer (argv, shell-quoted); {address} and {port} are replaced
    command: str = ""
    dynamic: bool = False  # keepalived's misc_dynamic: exit 2..255 sets the weight to exit - 2

    def to_dict(self) -> dict:
        default = _DEFAULT_CHECK
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "kind" or getattr(self, f.name) != getattr(default, f.name)}

    @classmethod
    def from_dict(cls, d) -> Check | None:
        """A Check from a peer's dict; None when it is not one (not a dict, an unknown kind)."""
        if not isinstance(d, dict) or d.get("kind") not in KINDS:
            return None
        values = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            value, default = d[f.name], getattr(_DEFAULT_CHECK, f.name)
            try:
                if isinstance(default, bool):
                    value = bool(value)
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
                else:
                    value = str(value)
            except (TypeError, ValueError):
                continue
            values[f.name] = value
        return cls(**values)

    def probe_key(self, address: str, port: int) -> tuple:
        """What makes two uses one probe (and one up/down state): the server probed and the whole check."""
        return (address, self.port or port, self)


_DEFAULT_CHECK = Check()
NO_CHECK = "none"  # a real server's override that turns its service's check off for it


@dataclass(frozen=True)
class Policy:
    """What a service does with its servers' health."""

    on_failure: str = "inhibit"  # inhibit | remove
    quorum: int = 0  # the sum of healthy servers' weights the service needs (0: no quorum)
    hysteresis: int = 0  # quorum is lost below quorum - hysteresis, regained at quorum + hysteresis
    sorry_server: str = ""  # ADDRESS:PORT ([v6]:PORT) put in the table only while quorum is lost
    sorry_forward: str = "route"  # its forwarding method (masq | route | tunnel)
    max_down_share: float = 1.0  # fail-open (PyBal's depool threshold): never take down more than this share
    slow_start: int = 0  # seconds a server that came back takes to ramp up to its weight (0: at once)
    start_down: bool = False  # keepalived's alpha: a server starts down until it passes `rise` checks

    def to_dict(self) -> dict:
        default = _DEFAULT_POLICY
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}

    @classmethod
    def from_dict(cls, d) -> Policy:
        if not isinstance(d, dict):
            return cls()
        values = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            default = getattr(_DEFAULT_POLICY, f.name)
            try:
                values[f.name] = type(default)(d[f.name])
            except (TypeError, ValueError):
                continue
        if values.get("on_failure") not in (None, *ON_FAILURE):
            del values["on_failure"]
        return cls(**values)


_DEFAULT_POLICY = Policy()


def server_text(address: str, port: int) -> str:
    """How health state and overrides name a real server: `address|port` (like protocol key texts)."""
    return f"{address}|{port}"


@dataclass(frozen=True)
class ServiceHealth:
    """A service's checks and policy, as a snapshot carries them."""

    check: Check | None = None  # the check of every real server (None: no check)
    policy: Policy = field(default_factory=Policy)
    overrides: dict = field(default_factory=dict)  # server_text → Check, or None: no check for that server

    def check_for(self, address: str, port: int) -> Check | None:
        """The check that watches one real server (its override, or the service's), None when none does."""
        key = server_text(address, port)
        if key in self.overrides:
            return self.overrides[key]
        return self.check

    def to_dict(self) -> dict:
        out: dict = {}
        if self.check is not None:
            out["check"] = self.check.to_dict()
        if self.policy != _DEFAULT_POLICY:
            out["policy"] = self.policy.to_dict()
        if self.overrides:
            out["overrides"] = {k: (c.to_dict() if c is not None else NO_CHECK) for k, c in self.overrides.items()}
        return out

    @classmethod
    def from_dict(cls, d) -> ServiceHealth:
        if not isinstance(d, dict):
            return cls()
        overrides = {}
        raw = d.get("overrides")
        if isinstance(raw, dict):
            for key, value in raw.items():
                if value == NO_CHECK:
                    overrides[str(key)] = None
                elif (check := Check.from_dict(value)) is not None:
                    overrides[str(key)] = check
        return cls(check=Check.from_dict(d.get("check")), policy=Policy.from_dict(d.get("policy")),
                   overrides=overrides)


def health_from_snapshot(snapshot: dict) -> dict[str, ServiceHealth]:
    """The snapshot's health definitions by service key text ({} from a panel that sends none)."""
    raw = snapshot.get("health") if isinstance(snapshot, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(k): ServiceHealth.from_dict(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Result:
    """What one probe found."""

    ok: bool
    reason: str  # "ok", "HTTP 503", "connect refused", "timeout after 2.0 s", "exit 1", "no answer of type A"
    latency: float | None = None  # seconds the probe took (None: it timed out)
    weight: int | None = None  # a MISC check's dynamic weight (misc_dynamic, exit 2..255 → exit - 2)
