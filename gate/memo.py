"""What a long-lived gate remembers between verifications, bounded: attestations that verified, and
policy results by what their input was made from."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from attestation.cosign import StoredAttestationLike
from attestation.reference import ImageReference
from gate.checklist import Checked

if TYPE_CHECKING:
    from gate.policy.model import Evaluation


class VerifiedMemo:
    """Attestations that verified, by the digest of their exact stored bytes and the image they were
    checked for, so the webhook does not verify and parse the same provenance on every admission.

    Only successes are kept, and only by a :class:`Gate` whose trust is keys alone (immutable for its
    life, and the outcome cannot depend on the time): an entry holds what :func:`check_attestation`
    returned for those bytes, never anything that was not verified. Bounded by an estimate of the
    memory its entries take (the stored bytes plus five times the statement's JSON, for the parsed
    statement and its encoding), least recently used first out.
    """

    def __init__(self, max_bytes: int) -> None:
        import collections
        import threading

        self._entries: collections.OrderedDict[tuple[str, ...], tuple[Checked, int]] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    @staticmethod
    def key(raw: StoredAttestationLike, image: ImageReference) -> tuple[str, ...]:
        import hashlib

        notes = "\0".join(f"{k}={v}" for k, v in sorted(raw.annotations.items()))
        return (
            hashlib.sha256(raw.data).hexdigest(),
            raw.media_type or "",
            hashlib.sha256(notes.encode()).hexdigest(),
            str(image.digest),
        )

    def get(self, key: tuple[str, ...], source: str) -> Checked | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
        checked = entry[0]
        assert checked.statement is not None
        # The same bytes may be found under another name (a layer index moves when layers are added).
        return Checked(
            report=replace(checked.report, source=source),
            statement=replace(checked.statement, source=source),
            key=key,
        )

    def put(self, key: tuple[str, ...], checked: Checked, size: int) -> None:
        if size > self._max:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = (checked, size)
            self._bytes += size
            while self._bytes > self._max:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped


class EvaluationMemo:
    """Policy results by :meth:`Prepared.policy_input_key`, so an image admitted again with the same
    attestations is not evaluated again.

    Sound only where evaluation is a pure function of the input, the policy set and its data, which a
    :class:`Gate` holds fixed for its life. The wasm engine is: a policy that needs a built-in with
    another source of truth (``time.now_ns``, ``http.send``, ``rand.intn``, ``opa.runtime``) is refused
    at load time, since OPA's wasm leaves those to the host and provgate provides none of them. The other
    engines evaluate such built-ins themselves, and an OPA server's policies and data can change under
    us, so they are asked every time. Failures are never remembered. Bounded by the results held (an
    evaluation of a 200-task pipeline can hold hundreds of violations), least recently used first out.
    """

    def __init__(self, max_results: int) -> None:
        import collections
        import threading

        self._entries: collections.OrderedDict[tuple[object, ...], Evaluation] = collections.OrderedDict()
        self._max = max_results
        self._held = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(evaluation: Evaluation) -> int:
        return 1 + len(evaluation.violations) + len(evaluation.warnings)

    def get(self, key: tuple[object, ...]) -> Evaluation | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
        return replace(found, elapsed_ms=0.0)

    def put(self, key: tuple[object, ...], evaluation: Evaluation) -> None:
        size = self._size(evaluation)
        if size > self._max:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._held -= self._size(old)
            self._entries[key] = evaluation
            self._held += size
            while self._held > self._max:
                _, dropped = self._entries.popitem(last=False)
                self._held -= self._size(dropped)

    def __len__(self) -> int:
        return len(self._entries)


def _deterministic(engine: object) -> bool:
    from gate.policy.wasm import WasmEngine

    return isinstance(engine, WasmEngine)
