"""The wire format on its own (no Redis, no actors): the codec's signed
envelopes, the secret rules, and the replay guard."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
from typing import Any

import pytest
from forgery import UNPICKLED, Evil

from pykka_registry._errors import MIN_SECRET_BYTES, InvalidSecretError
from pykka_registry._remote import MAGIC, Codec, ReplayGuard, secret_key

SECRET = "a test secret of enough bytes"
HEADER = {"k": "tell", "id": "s-1", "src": "a", "dst": "b", "di": "i1", "to": "urn:x",
          "t": 1.0, "ttl": 0}

def _envelope(header: Any, payload: bytes, signature: bytes) -> bytes:
    head = json.dumps(header).encode()
    return MAGIC + signature + len(head).to_bytes(4, "big") + head + payload


# -- secrets ----------------------------------------------------------------------------


def test_secret_key_accepts_str_and_bytes_of_enough_bytes() -> None:
    assert MIN_SECRET_BYTES == 16
    assert secret_key(None) is None
    assert secret_key("x" * 16) == b"x" * 16
    assert secret_key(b"y" * 16) == b"y" * 16
    assert secret_key(bytearray(b"z" * 20)) == b"z" * 20
    assert secret_key(memoryview(b"w" * 16)) == b"w" * 16
    assert secret_key("é" * 8) == "é".encode() * 8  # bytes are counted, not characters


@pytest.mark.parametrize("secret", ["", b"", "short", b"15 bytes long!!", "é" * 7, 42,
                                    ["a" * 16], "\udc80" * 16])
def test_secret_key_refuses_short_or_odd_secrets(secret: Any) -> None:
    with pytest.raises(InvalidSecretError) as caught:
        secret_key(secret)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(InvalidSecretError):
        Codec(secret)


# -- envelopes --------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, None])
def test_encode_then_decode_gives_back_header_and_payload(secret: Any) -> None:
    codec = Codec(secret)
    assert codec.signed is (secret is not None)
    blob = codec.encode(HEADER, b"payload bytes")
    assert blob.startswith(MAGIC)
    assert codec.decode(blob) == (HEADER, b"payload bytes", "")
    assert codec.decode(codec.encode(HEADER, b"")) == (HEADER, b"", "")


def test_unsigned_envelopes_carry_a_zero_signature() -> None:
    blob = Codec(None).encode(HEADER, b"p")
    assert blob[len(MAGIC):len(MAGIC) + 32] == bytes(32)
    signed = Codec(SECRET).encode(HEADER, b"p")
    assert signed[len(MAGIC):len(MAGIC) + 32] != bytes(32)
    assert signed[len(MAGIC) + 32:] == blob[len(MAGIC) + 32:]  # same body, signed


def test_a_signed_codec_refuses_every_forgery_without_returning_its_payload() -> None:
    codec = Codec(SECRET)
    evil = pickle.dumps(Evil("forged"))
    good = codec.encode(HEADER, evil)
    other = Codec(b"another secret, not ours").encode(HEADER, evil)
    forgeries = {
        "unsigned": _envelope(HEADER, evil, bytes(32)),
        "garbage signature": _envelope(HEADER, evil, os.urandom(32)),
        "another secret": other,
        "tampered header": good[:45] + bytes([good[45] ^ 1]) + good[46:],
        "tampered payload": good[:-1] + bytes([good[-1] ^ 1]),
        "payload appended": good + b"more",
        "truncated": good[:-3],
        "no magic": b"PKR0" + good[4:],
        "too short": good[:30],
        "not an envelope": evil,
        "empty": b"",
    }
    UNPICKLED.clear()
    for what, blob in forgeries.items():
        header, payload, why = codec.decode(blob)
        assert header is None and payload == b"", what
        assert why in ("unsigned", "bad signature", "not an envelope"), (what, why)
    assert codec.decode(forgeries["unsigned"])[2] == "unsigned"
    assert codec.decode(forgeries["another secret"])[2] == "bad signature"
    assert codec.decode(forgeries["not an envelope"])[2] == "not an envelope"
    assert UNPICKLED == []  # decoding never unpickles
    assert codec.decode(good)[1] == evil  # the real one comes back (still a pickle)
    assert UNPICKLED == []


def test_an_unsigned_codec_accepts_any_envelope_but_checks_the_header() -> None:
    codec = Codec(None)
    signed = Codec(SECRET).encode(HEADER, b"p")
    assert codec.decode(signed) == (HEADER, b"p", "")  # no secret: nothing to check against
    assert codec.decode(_envelope(HEADER, b"p", os.urandom(32))) == (HEADER, b"p", "")
    bad_json = MAGIC + bytes(32) + (3).to_bytes(4, "big") + b"{x]" + b"p"
    assert codec.decode(bad_json) == (None, b"", "bad header")
    not_a_dict = _envelope([1, 2], b"p", bytes(32))
    assert codec.decode(not_a_dict) == (None, b"", "bad header")
    assert codec.decode(b"PKR1") == (None, b"", "not an envelope")


def test_a_signed_codec_checks_the_signature_before_the_header() -> None:
    codec = Codec(SECRET)
    bad_json = MAGIC + os.urandom(32) + (3).to_bytes(4, "big") + b"{x]"
    assert codec.decode(bad_json) == (None, b"", "bad signature")
    body = (3).to_bytes(4, "big") + b"{x]"
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    assert codec.decode(MAGIC + signature + body) == (None, b"", "bad header")


# -- the replay guard ----------------------------------------------------------------------


def test_replay_guard_accepts_reordering_and_refuses_replays() -> None:
    guard = ReplayGuard()
    assert guard.first_time("s-5", 0.0)
    assert guard.first_time("s-3", 0.0)  # overtaken by 5: still new
    assert not guard.first_time("s-3", 0.0)  # replayed
    assert not guard.first_time("s-5", 0.0)
    assert guard.first_time("s-7", 0.0) and guard.first_time("s-6", 0.0)
    assert not guard.first_time("s-6", 0.0)
    assert guard.first_time("other-1", 0.0)  # senders are independent
    assert not guard.first_time("no-number", 0.0)
    guard.forget_before(1.0)
    assert guard.first_time("s-1", 2.0)  # forgotten sender: the age check guards instead


def test_replay_guard_window_below_the_first_number_seen() -> None:
    guard = ReplayGuard()
    first = 1000
    assert guard.first_time(f"s-{first}", 0.0)
    assert guard.first_time(f"s-{first - ReplayGuard.REORDER}", 0.0)  # inside the window
    assert not guard.first_time(f"s-{first - ReplayGuard.REORDER - 1}", 0.0)  # before it
    assert not guard.first_time("s-0", 0.0)


def test_replay_guard_memory_is_bounded_and_sender_ids_may_contain_dashes() -> None:
    guard = ReplayGuard()
    assert guard.first_time("ab-cd-1", 0.0)
    # a jump further than MAX_MISSING forgets the gap: what was skipped is refused
    far = 2 + ReplayGuard.MAX_MISSING + 10
    assert guard.first_time(f"ab-cd-{far}", 0.0)
    assert not guard.first_time("ab-cd-2", 0.0)
    assert not guard.first_time(f"ab-cd-{far}", 0.0)
    # many small gaps: at most MAX_MISSING numbers are kept, the oldest go first
    step = 3
    start = far
    for i in range(1, ReplayGuard.MAX_MISSING // 2 + 10):
        assert guard.first_time(f"ab-cd-{start + i * step}", 0.0)
    _, missing, _ = guard._senders["ab-cd"]
    assert len(missing) <= ReplayGuard.MAX_MISSING
    newest = start + (ReplayGuard.MAX_MISSING // 2 + 9) * step
    assert guard.first_time(f"ab-cd-{newest - 1}", 0.0)  # a recent gap is still open
    assert not guard.first_time(f"ab-cd-{start + 1}", 0.0)  # the oldest gap was forgotten


def test_replay_guard_forgets_only_quiet_senders() -> None:
    guard = ReplayGuard()
    assert guard.first_time("old-1", 1.0)
    assert guard.first_time("new-1", 5.0)
    guard.forget_before(3.0)
    assert not guard.first_time("new-1", 6.0)  # still remembered
    assert guard.first_time("old-1", 6.0)  # forgotten: new again
