"""What a long-lived gate remembers between verifications, bounded: attestations that verified, and
policy results by what their input was made from. Neither can change a decision: each entry is exactly
what the gate would compute again for the same key (why, in each class's docstring)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from attestation.cosign import StoredAttestationLike
from attestation.reference import ImageReference
from gate.checklist import Checked
from gate.decision import AttestationReport
from gate.policy_input import VerifiedStatement
from gate.trust import SignerIdentity

if TYPE_CHECKING:
    from gate.policy.model import Evaluation

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    """A thread-safe map that holds at most ``capacity`` units of cost, least recently used out first.

    Each entry costs what :meth:`put` is told (bytes, results, ...); an entry that costs more than the
    whole capacity is not kept (and drops nothing), and replacing an entry frees what it cost.
    """

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._capacity = capacity
        self._held = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, cost: int) -> None:
        if cost > self._capacity:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._held -= old[1]
            self._entries[key] = (value, cost)
            self._held += cost
            while self._held > self._capacity:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._held -= dropped

    def __len__(self) -> int:
        return len(self._entries)


class _Remembered(NamedTuple):
    """What :class:`VerifiedMemo` keeps of a :class:`Checked`: the statement as its JSON encoding, not
    the parsed tree. A parsed statement is dozens of dicts and lists, each of which the garbage
    collector's full passes walk for as long as it is kept; bytes it does not walk at all
    (docs/performance.md, "The collector's full passes stop the loop")."""

    report: AttestationReport
    signers: tuple[SignerIdentity, ...]
    encoded: bytes


class VerifiedMemo:
    """Attestations that verified, by the digest of their exact stored bytes and the image they were
    checked for, so the webhook does not verify the same provenance on every admission.

    Only successes are kept, and only by a :class:`Gate` whose trust is keys alone (immutable for its
    life, and the outcome cannot depend on the time): an entry holds what :func:`check_attestation`
    returned for those bytes, never anything that was not verified. The statement is kept as the
    encoding made where it was verified and parsed again when remembered: the same JSON value. Bounded
    by an estimate of the memory its entries take (told by the caller), least recently used first out.
    """

    def __init__(self, max_bytes: int) -> None:
        self._entries: BoundedLRU[tuple[str, ...], _Remembered] = BoundedLRU(max_bytes)

    @staticmethod
    def key(raw: StoredAttestationLike, image: ImageReference) -> tuple[str, ...]:
        # JSON with ASCII escapes: no two annotation maps share an encoding, and any string encodes,
        # lone surrogates included.
        notes = json.dumps(sorted(raw.annotations.items())).encode("ascii")
        return (
            hashlib.sha256(raw.data).hexdigest(),
            raw.media_type or "",
            hashlib.sha256(notes).hexdigest(),
            str(image.digest),
        )

    def get(self, key: tuple[str, ...], source: str) -> Checked | None:
        found = self._entries.get(key)
        if found is None:
            return None
        # The same bytes may be found under another name (a layer index moves when layers are added).
        statement = VerifiedStatement(json.loads(found.encoded), found.signers, source, found.encoded)
        return Checked(report=replace(found.report, source=source), statement=statement, key=key)

    def put(self, key: tuple[str, ...], checked: Checked, size: int) -> None:
        """Remember ``checked`` (a verified statement with its encoding; anything else is not kept)."""
        verified = checked.statement
        if verified is None or verified.encoded is None or checked.unusable:
            return
        self._entries.put(key, _Remembered(checked.report, verified.signers, verified.encoded), size)


# What one remembered evaluation takes beyond its text, in bytes, as tracemalloc counts it on CPython
# 3.11: the entry, its key tuples and the Evaluation; each result. A result's title, description and
# solution are its rule's own strings, shared; its code, message and term are its own.
_EVALUATION_OVERHEAD = 600
_RESULT_OVERHEAD = 250


def _text_bytes(key: object) -> int:
    if isinstance(key, str | bytes):
        return len(key)
    if isinstance(key, tuple):
        return sum(_text_bytes(k) for k in key)
    return 64


def evaluation_cost(key: tuple[object, ...], evaluation: Evaluation) -> int:
    """The memory :class:`EvaluationMemo` counts for ``evaluation`` under ``key``: an estimate in bytes,
    held to tracemalloc's count by ``tests/gate/test_verify_warm.py``."""
    results = (*evaluation.violations, *evaluation.warnings)
    return (
        _EVALUATION_OVERHEAD
        + _text_bytes(key)
        + sum(_RESULT_OVERHEAD + len(r.code) + len(r.msg) + len(r.term or "") for r in results)
    )


class EvaluationMemo:
    """Policy results by :meth:`Prepared.policy_input_key`, so an image admitted again with the same
    attestations is not evaluated again.

    Sound only where evaluation is a pure function of the input, the policy set and its data, which a
    :class:`Gate` holds fixed for its life: an engine says so with ``pure`` (the wasm engine refuses a
    policy that needs a built-in with another source of truth, ``time.now_ns``, ``http.send``,
    ``rand.intn``, ``opa.runtime``, at load time; an OPA server evaluates them itself, and its policies and
    data can change under us, so it is asked every time). Failures are never remembered. Bounded by the
    memory its entries are estimated to take (:func:`evaluation_cost`: a message a rule builds from the
    statement can be long), least recently used first out.
    """

    def __init__(self, max_bytes: int) -> None:
        self._entries: BoundedLRU[tuple[object, ...], Evaluation] = BoundedLRU(max_bytes)

    def get(self, key: tuple[object, ...]) -> Evaluation | None:
        found = self._entries.get(key)
        return None if found is None else replace(found, elapsed_ms=0.0)

    def put(self, key: tuple[object, ...], evaluation: Evaluation) -> None:
        self._entries.put(key, evaluation, evaluation_cost(key, evaluation))

    def __len__(self) -> int:
        return len(self._entries)
