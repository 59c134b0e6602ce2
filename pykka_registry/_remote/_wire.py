"""The wire format of messages between processes: the codec that builds and
verifies signed envelopes, and the replay guard.

Wire format
-----------
Every message and reply travels as one byte string::

    b"PKR1" | signature (32 bytes) | header length (4 bytes, big endian) | header | payload

``header`` is JSON: kind (``k``), message id (``id``), source and destination
node (``src``, ``dst``), the destination's lease incarnation (``di``, on a
message to an actor), target actor URN (``to``), wall-clock send time (``t``),
time to live (``ttl``), and ``rk`` when the reply goes to the asker's own
reply list. ``payload`` is a pickle (empty for ``stop`` and ``wake``). The
signature is HMAC-SHA256 over everything after it, keyed with the shared
secret (at least :data:`MIN_SECRET_BYTES` bytes); without a secret it is 32
zero bytes.

Guarantees
----------
* **Nothing unverified comes out.** :meth:`Codec.decode` of a codec with a
  secret returns a payload only when the signature over header and payload is
  the right one (compared in constant time); an unsigned, wrongly signed,
  truncated or tampered envelope is refused with a reason and its payload is
  never looked at. This module never unpickles anything: the messenger
  unpickles only payloads ``decode`` returned (see
  :mod:`pykka_registry._remote._messenger` for the checks it adds: node,
  age, incarnation, replay).
* A codec without a secret accepts unsigned envelopes (and signs nothing).
  A secret shorter than :data:`MIN_SECRET_BYTES` (an empty one included), or
  not a ``str``/``bytes``, is refused with :class:`InvalidSecretError`.
* **Replays are recognised in bounded memory.** :class:`ReplayGuard` says
  ``True`` at most once per message id, tolerates reordering (a message
  overtaken by later ones from the same sender is still new) and forgets a
  sender only when asked (the messenger's age check guards older messages).

Threads
-------
A :class:`Codec` is immutable: any thread encodes and decodes. A
:class:`ReplayGuard` is used by the receiver thread only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Mapping
from typing import Any, Optional, Union

from pykka_registry._errors import MIN_SECRET_BYTES, InvalidSecretError

__all__ = [
    "ASK",
    "ERROR",
    "MAGIC",
    "REPLY",
    "STOP",
    "TELL",
    "WAKE",
    "Codec",
    "ReplayGuard",
    "secret_key",
]

MAGIC = b"PKR1"
_SIG_LEN = 32
_NO_SIG = bytes(_SIG_LEN)
_LEN = struct.Struct(">I")
_PREFIX_LEN = len(MAGIC) + _SIG_LEN

# message kinds
TELL, ASK, STOP, REPLY, ERROR, WAKE = "tell", "ask", "stop", "reply", "error", "wake"


# -- signing and verifying ------------------------------------------------------------


def secret_key(secret: Any) -> Optional[bytes]:
    """The HMAC key for ``secret`` (``None``: unsigned).

    Raises:
        InvalidSecretError: not ``str``/``bytes``, or too short.
    """
    if secret is None:
        return None
    if isinstance(secret, str):
        try:
            key = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidSecretError("secret is a str that is not valid Unicode") from None
    elif isinstance(secret, (bytes, bytearray, memoryview)):
        key = bytes(secret)
    else:
        raise InvalidSecretError(f"secret must be a str or bytes, not {type(secret).__name__}")
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidSecretError(
            f"secret must be at least {MIN_SECRET_BYTES} bytes long, got {len(key)}: use a "
            "long random value shared by every process (for example secrets.token_hex(32))")
    return key


class Codec:
    """Builds and checks envelopes. Immutable; used from any thread.

    Raises:
        InvalidSecretError: ``secret`` is too short (see :func:`secret_key`).
    """

    def __init__(self, secret: Union[str, bytes, None]) -> None:
        self._secret = secret_key(secret)

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def _sign(self, body: bytes) -> bytes:
        if self._secret is None:
            return _NO_SIG
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def encode(self, header: Mapping[str, Any], payload: bytes) -> bytes:
        head = json.dumps(header, separators=(",", ":")).encode()
        body = _LEN.pack(len(head)) + head + payload
        return MAGIC + self._sign(body) + body

    def decode(self, blob: bytes) -> tuple[Optional[dict[str, Any]], bytes, str]:
        """``(header, payload, "")`` or ``(None, b"", why it was refused)``.

        The payload is never looked at before the signature is verified."""
        if len(blob) < _PREFIX_LEN + _LEN.size or not blob.startswith(MAGIC):
            return None, b"", "not an envelope"
        signature = blob[len(MAGIC):_PREFIX_LEN]
        body = blob[_PREFIX_LEN:]
        if self._secret is not None:
            if signature == _NO_SIG:
                return None, b"", "unsigned"
            if not hmac.compare_digest(signature, self._sign(body)):
                return None, b"", "bad signature"
        (head_len,) = _LEN.unpack_from(body)
        try:
            header = json.loads(body[_LEN.size:_LEN.size + head_len])
        except ValueError:
            return None, b"", "bad header"
        if not isinstance(header, dict):
            return None, b"", "bad header"
        return header, body[_LEN.size + head_len:], ""


# -- the replay guard ----------------------------------------------------------------


class ReplayGuard:
    """Which message ids were seen already, in little memory.

    A sender numbers its messages to each destination node ``1, 2, 3...``
    (ids ``"<sender>-<n>"``), so per sender this keeps the highest number seen
    and the few numbers below it not seen yet (messages overtaken by later
    ones). A number at or below the highest that is not among those is a
    replay. Only the receiver thread uses it.
    """

    REORDER = 64  # accepted below the first number seen from a sender
    MAX_MISSING = 4096

    def __init__(self) -> None:
        self._senders: dict[str, tuple[list[int], set[int], list[float]]] = {}

    def first_time(self, msg_id: str, now: float) -> bool:
        sender, _, number = msg_id.rpartition("-")
        try:
            n = int(number)
        except ValueError:
            return False
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = ([n], set(range(max(1, n - self.REORDER), n)), [now])
            return True
        highest, missing, seen_at = state
        seen_at[0] = now
        if n > highest[0]:
            if n - highest[0] > self.MAX_MISSING:
                missing.clear()
            else:
                missing.update(range(highest[0] + 1, n))
            highest[0] = n
            if len(missing) > self.MAX_MISSING:  # lost messages: forget the oldest gaps
                for old in sorted(missing)[: len(missing) - self.MAX_MISSING]:
                    missing.discard(old)
            return True
        if n in missing:
            missing.discard(n)
            return True
        return False

    def forget_before(self, when: float) -> None:
        """Drop the state of senders not heard from since ``when``."""
        for sender in [s for s, state in self._senders.items() if state[2][0] < when]:
            del self._senders[sender]

