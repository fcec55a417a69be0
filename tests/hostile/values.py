"""Hostile values: what a form field may be sent by someone who does not use the page's own form.

Numbers at every boundary a database, the kernel or ipvsadm has (2^15, 2^16, 2^31, 2^32, 2^63, 10^12, 31 days),
text with NUL bytes, a megabyte, unicode that changes direction or width, IPv6 zone ids and other addresses the
kernel refuses, spreadsheet formulas; and bytes that are not UTF-8. A mutation of a form keeps most of what the
page offers (so the request reaches the service layer) and changes one to three fields: replaced, dropped or
sent twice.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .forms import BOOL, CHOICE, FILE, INT, Form

BOUNDARY_INTS = (
    -(2**63), -(2**31), -1, 0, 1, 9, 10, 255, 256, 2**15, 65535, 65536, 86400 * 31, 86400 * 31 + 1, 10**6,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 10**12, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30,
)
ODD_NUMBERS = ("", " 42 ", "+5", "-0", "1e3", "1.5", "0x10", "1_000", "\u0663", "NaN", "inf", "٣٣", "9" * 400)
ADDRESSES = (
    "fe80::1%eth0", "fe80::1%25eth0", "fe80::1%", "::ffff:10.0.0.1", "::", "::1", "0.0.0.0", "255.255.255.255",
    "224.0.0.1", "127.0.0.1", "10.0.0.1 ", " 10.0.0.1", "10.0.0.1/24", "10.0.0.1:80", "[2001:db8::1]",
    "2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "1.2.3", "01.02.03.004", "10.0.0.256",
    "localhost",
)
TEXTS = (
    "", " ", "\x00", "a\x00b", "\r\n", "\t", "\u202eevil", "\u200b", "é", "🙂" * 300, "a" * 65, "a" * 256,
    "x" * 1_000_000, '=HYPERLINK("http://x/","x")', "+1", "-1+1", "@SUM(1)", "<script>alert(1)</script>",
    "{{ 7|add:7 }}{% now 'Y' %}", "' OR 1=1 --", "../../etc/passwd", "%s%n%x", "-A -t 10.0.0.1:80 -s rr",
    "15 3 * * *", "* * * * * *", "60 25 32 13 8", "lb1", "web", "admin",
)
BAD_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80")


def ints():
    return st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers()).map(str)


def texts():
    return st.one_of(st.sampled_from(TEXTS + ADDRESSES), st.text(max_size=40))


def raw():
    """A value as bytes, possibly not UTF-8 (posted percent-encoded, as a hostile client may)."""
    return st.one_of(st.sampled_from(BAD_UTF8), st.binary(max_size=20))


def value_for(kind: str, options: list[str]):
    """A hostile value for a field of this kind: mostly of its own kind, sometimes of any other."""
    own = {
        INT: st.one_of(ints(), st.sampled_from(ODD_NUMBERS)),
        BOOL: st.sampled_from(("on", "", "off", "false", "0", "1", "\x00", "yes" * 1000)),
        CHOICE: st.one_of(st.sampled_from(options) if options else st.nothing(), texts()),
    }.get(kind, texts())
    return st.one_of(own, own, own, ints(), texts(), raw())


def file_contents():
    """An uploaded file: ipvsadm text with a NUL or bad UTF-8 in it, empty, or large."""
    rule = b"-A -t 10.7.7.7:80 -s rr\n-a -t 10.7.7.7:80 -r 192.0.2.77:80 -m -w 1\n"
    return st.one_of(
        st.sampled_from((b"", rule, rule + b"\x00", rule.replace(b"rr", b"r\x00r"), rule + b"\xff\xfe\n",
                         b"\xef\xbb\xbf" + rule, rule.replace(b"\n", b"\r\n"),
                         rule.replace(b"10.7.7.7", b"fe80::1%eth0"), rule * 20000, b"\x00" * 1000)),
        st.binary(max_size=200),
    )


@st.composite
def mutations(draw, form: Form, overrides: dict[str, list[str]]):
    """(fields to send, files to upload): the page's form with one to three fields made hostile."""
    data = {**form.baseline(), **{k: v[:1] for k, v in overrides.items()}}
    files = {}
    names = sorted(set(form.fields) | set(overrides) | set(data))
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)) if names else []
    for name in chosen:
        f = form.fields.get(name)
        kind = f.kind if f else CHOICE if len(overrides.get(name, [])) > 1 else INT if _numeric(data, name) else "text"
        options = (f.options if f else []) + overrides.get(name, [])
        if kind == FILE:
            if draw(st.booleans()):
                files[name] = draw(file_contents())
            continue
        how = draw(st.sampled_from(("replace", "replace", "replace", "drop", "twice")))
        if how == "drop":
            data.pop(name, None)
        elif how == "twice":
            data[name] = [draw(value_for(kind, options)), *(data.get(name) or [""])][:2]
        else:
            data[name] = [draw(value_for(kind, options))]
    if draw(st.integers(0, 9)) == 0:
        data[draw(st.sampled_from(("id", "pk", "cluster_id", "desired_revision", "is_superuser", "\x00")))] = [
            draw(value_for(INT, []))]
    return data, files


def _numeric(data: dict, name: str) -> bool:
    values = data.get(name) or [""]
    return isinstance(values[0], str) and values[0].isdigit()
