"""Signed envelopes (lvsadmin.signing): what a receiver believes, and everything it refuses."""

from __future__ import annotations

import copy

import pytest

from lvsadmin import signing

PANEL = signing.Signer(signing.generate())
OTHER = signing.Signer(signing.generate())
KEYS = {PANEL.fingerprint: PANEL.public}
NOW = 1_800_000_000.0


def sealed(body=None, **kw):
    kw = {"to": "lb1", "revision": 7, "ttl": 60, "now": NOW, **kw}
    return PANEL.seal("lvsadmin.agent.reconcile", body or {"revision": 7, "table": {"services": []}}, **kw)


def refusal(message, keys=KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW + 1) -> str:
    with pytest.raises(signing.Refused) as exc:
        signing.open_envelope(message, keys, task=task, to=to, now=now)
    return exc.value.reason


def test_a_sealed_message_opens_to_its_body_and_what_was_signed_with_it():
    opened = signing.open_envelope(sealed(lineage="L1"), KEYS, task="lvsadmin.agent.reconcile", to="lb1",
                                   now=NOW + 1)
    assert opened.body == {"revision": 7, "table": {"services": []}}
    assert (opened.to, opened.revision, opened.lineage, opened.expires) == ("lb1", 7, "L1", NOW + 60)
    assert opened.key == PANEL.fingerprint and len(opened.nonce) == 24


def test_the_signature_survives_the_brokers_json_whatever_its_spacing_and_key_order():
    import json

    message = sealed({"b": [1, 2.5, "é"], "a": {"z": None, "y": True}, "revision": 7})
    wire = json.loads(json.dumps(dict(reversed(list(message.items()))), indent=2, ensure_ascii=True))
    assert signing.open_envelope(wire, KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW).body["b"][2] == "é"


def test_an_unsigned_message_is_refused():
    assert refusal({"revision": 999, "table": {"services": []}, "owns_whole_table": True}) == signing.UNSIGNED
    assert refusal(None) == signing.UNSIGNED
    assert refusal({"body": {"revision": 999}, "sig": "x"}) == signing.UNSIGNED  # a body not as signed text


def test_a_message_signed_by_another_key_is_refused():
    forged = OTHER.seal("lvsadmin.agent.reconcile", {"revision": 999}, to="lb1", revision=999, now=NOW)
    assert refusal(forged) == signing.UNKNOWN_KEY
    forged["key"] = PANEL.fingerprint  # claiming to be the panel's does not make it so
    assert refusal(forged) == signing.BAD_SIGNATURE


@pytest.mark.parametrize(("field", "value"), [
    ("body", '{"revision":999,"table":{"services":[]}}'), ("body", '{"revision":7,"table":{"services":[{"x":1}]}}'),
    ("to", "lb1 "), ("revision", 999), ("expires", NOW + 10**6), ("lineage", "other"), ("nonce", "0" * 24)])
def test_a_tampered_message_is_refused(field, value):
    message = copy.deepcopy(sealed())
    message[field] = value
    assert refusal(message) == signing.BAD_SIGNATURE


def test_a_message_for_another_balancer_or_task_is_refused():
    assert refusal(sealed(), to="lb2") == signing.WRONG_BALANCER
    assert refusal(sealed(), task="lvsadmin.agent.backup") == signing.WRONG_TASK


def test_an_expired_message_is_refused():
    assert refusal(sealed(), now=NOW + 61) == signing.EXPIRED
    signing.open_envelope(sealed(), KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW + 59)


def test_a_replayed_message_is_refused_by_the_nonce_memory():
    memory = signing.NonceMemory()
    message = sealed()
    memory.check(signing.open_envelope(message, KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW), NOW)
    memory.check(signing.open_envelope(sealed(), KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW), NOW)
    with pytest.raises(signing.Refused) as exc:
        memory.check(signing.open_envelope(message, KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW), NOW)
    assert exc.value.reason == signing.REPLAYED


def test_key_files_and_public_key_texts(tmp_path):
    key = signing.write_private_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    text = (tmp_path / "k.pub").read_text().strip()
    assert text == signing.public_text(key) and text.startswith("ed25519:")
    assert signing.fingerprint(text) == signing.fingerprint(signing.load_private_key(tmp_path / "k"))
    assert signing.fingerprint(signing.load_public(str(tmp_path / "k.pub"))) == signing.fingerprint(text)
    for bad in ("", "ssh-ed25519 AAAA", "ed25519:not base64!", "ed25519:AAAA"):
        with pytest.raises(ValueError):
            signing.parse_public(bad)
    (tmp_path / "rsa").write_text("not a key")
    with pytest.raises(signing.KeyFileError):
        signing.load_private_key(tmp_path / "rsa")
    with pytest.raises(signing.KeyFileError):
        signing.load_private_key(tmp_path / "missing")


def test_an_envelope_of_version_1_signed_over_the_body_text_itself_is_still_believed():
    import base64

    message = sealed()
    old = {**message, "v": 1}
    del old["sig"]
    old["sig"] = base64.b64encode(PANEL.key.sign(signing.canonical(old))).decode()
    assert signing.open_envelope(old, KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW + 1).revision == 7
    assert refusal({**old, "body": old["body"].replace("7", "8")}) == signing.BAD_SIGNATURE
    assert refusal({**message, "v": 1}) == signing.BAD_SIGNATURE  # the version is signed: no downgrade


def test_the_signature_covers_a_large_body_through_its_digest_and_any_change_to_it_breaks_it():
    body = {"revision": 7, "table": {"services": [{"address": f"10.0.{i // 250}.{i % 250}", "destinations": [
        {"address": f"192.168.{j}.1", "weight": 1} for j in range(10)]} for i in range(1000)]}}
    message = sealed(body)
    assert signing.signed_bytes(message).count(b'"body":"') == 1 and len(signing.signed_bytes(message)) < 1000
    assert signing.open_envelope(message, KEYS, task="lvsadmin.agent.reconcile", to="lb1", now=NOW + 1).body == body
    assert refusal({**message, "body": message["body"].replace('"weight":1', '"weight":2', 1)}) == \
        signing.BAD_SIGNATURE
