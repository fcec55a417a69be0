"""The forms a page offers, read from its HTML as a browser would submit them.

Reading the rendered page (not the form classes) means a field another change adds — a hidden `version`, a new
limit — is in the baseline and gets fuzzed without touching the hostile tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

TEXT, INT, BOOL, CHOICE, FILE = "text", "int", "bool", "choice", "file"


@dataclass
class Field:
    name: str
    kind: str
    values: list[str] = field(default_factory=list)  # what the browser sends as it is (several: a multi-select)
    options: list[str] = field(default_factory=list)  # choices of a select, radio group or submit button


@dataclass
class Form:
    method: str
    action: str | None
    fields: dict[str, Field] = field(default_factory=dict)

    def add(self, name: str, kind: str, value: str | None, *, option: str | None = None) -> None:
        f = self.fields.setdefault(name, Field(name, kind))
        if option is not None:
            f.options.append(option)
        if value is not None:
            f.values.append(value)

    def baseline(self) -> dict[str, list[str]]:
        """What submitting the form untouched sends (a select with nothing selected sends its first option)."""
        out = {}
        for f in self.fields.values():
            if f.kind == FILE:
                continue
            values = f.values or (f.options[:1] if f.kind == CHOICE and f.name != "step" else [])
            if values or f.kind not in (BOOL, CHOICE):
                out[f.name] = values or [""]
        return out


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: tuple[str, bool] | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form((a.get("method") or "get").lower(), a.get("action"))
            self.forms.append(self._form)
            return
        form, name = self._form, a.get("name")
        if form is None:
            return
        if tag == "select" and name:
            self._select = (name, "multiple" in a)
            form.fields.setdefault(name, Field(name, CHOICE))
        elif tag == "option" and self._select:
            form.add(self._select[0], CHOICE, a.get("value", "") if "selected" in a else None,
                     option=a.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "button" and name:
            form.add(name, CHOICE, None, option=a.get("value", ""))
        elif tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "reset", "image"):
                return
            if kind in ("checkbox", "radio"):
                value = a.get("value", "on")
                form.add(name, BOOL if kind == "checkbox" else CHOICE, value if "checked" in a else None,
                         option=value)
                return
            if kind == "file":
                form.add(name, FILE, None)
                return
            value = a.get("value", "")
            numeric = kind == "number" or (kind == "hidden" and (value.isdigit() or name in ("revision", "version")))
            form.add(name, INT if numeric else TEXT, value)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea and self._form is not None:
            self._form.add(self._textarea, TEXT, "".join(self._text).removeprefix("\n"))
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._text.append(data)


def forms_of(html: str) -> list[Form]:
    parser = _Parser()
    parser.feed(html)
    return parser.forms


def post_form(html: str, path: str) -> Form | None:
    """The form of the page that posts to `path` (itself, when its action is empty)."""
    for form in forms_of(html):
        if form.method == "post" and (form.action in (None, "", path)):
            return form
    return None
