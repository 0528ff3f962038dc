"""One attestation, checked for one image: bound its size, verify the signature over the stored bytes,
only then parse the statement, and require a subject with the image's digest; and the findings a
decision carries about the attestations as a whole."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestation.cosign import StoredAttestationLike, decode_attestation
from attestation.errors import LimitExceeded, ProvgateError, VerificationError
from attestation.limits import MAX_ENVELOPE_BYTES, MAX_STATEMENT_BYTES, load_json
from attestation.reference import ImageReference
from gate.decision import AttestationReport, Finding
from gate.policy_input import VerifiedStatement
from gate.trust import SignerIdentity, TrustPolicy, verify_attestation

log = logging.getLogger(__name__)

# More attestations than this for one image is an attack or a broken pusher, not provenance.
MAX_ATTESTATIONS = 256
# A reason quotes what it found; what it found may be megabytes an attacker chose.
MAX_REASON_CHARS = 1000

NO_VERIFIED_ATTESTATION = "builtin.attestation.signature_check"
UNUSABLE_STATEMENT = "builtin.attestation.statement_usable"


@dataclass
class Checked:
    """The outcome of checking one attestation; ``statement`` only when it may reach the policy.

    ``unusable`` marks a payload a trusted signer signed that is not a usable statement: unlike a
    forgery or a statement about another image, it may be provenance the policy should have seen, so
    it denies the image rather than being skipped.
    """

    report: AttestationReport
    statement: VerifiedStatement | None = None
    unusable: bool = False
    # What the verified statement was made from (VerifiedMemo.key): the same key, the same statement.
    key: tuple[str, ...] | None = None


def _build_type(statement: Mapping[str, Any]) -> str | None:
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return None
    value = predicate.get("buildType")  # SLSA v0.2
    if value is None:
        definition = predicate.get("buildDefinition")  # SLSA v1.0
        value = definition.get("buildType") if isinstance(definition, dict) else None
    return value if isinstance(value, str) else None


def check_attestation(raw: StoredAttestationLike, image: ImageReference, trust: TrustPolicy) -> Checked:
    """Check one attestation for ``image``, in this order (DESIGN.md §5); the first step that fails ends
    the check with a report naming why, never with an exception:

    1. Bound the stored bytes before anything reads them (and report what the registry reader could not
       hand over as an attestation, its ``problem``: an unparsable referrer manifest, say).
    2. Decode the envelope and the material that came with it (cosign's layer annotations or a Sigstore
       bundle's ``verificationMaterial``): untrusted, and nothing of the payload is looked at.
    3. Verify a signature over the stored payload (DSSE PAE) under ``trust``: the payload type, then a
       trusted key, or a certificate chaining to a trusted root for an allowed SPIFFE ID at a trusted time.
    4. Only now read the payload: bounded JSON that is an in-toto statement (``_type``, ``subject``,
       ``predicateType``). A trusted signer signed it, so a payload that is not one is *unusable*: the
       decision denies the image rather than skip what may be provenance the policy should have seen.
    5. Require a subject whose sha256 is the image's digest: a statement about another image is skipped.

    Only an attestation that passes all five reaches the policy, as the statement exactly as signed.
    Whatever the bytes hold, the outcome is a report: an error nobody foresaw in steps 1-3 makes this
    attestation unverified (so no one who can push a layer next to an image can block it), one in
    steps 4-5 makes it unusable (its signer is trusted, so the image is denied).
    """
    source = raw.source
    try:
        # 1. what was found, and its size
        problem = getattr(raw, "problem", None)  # older StoredAttestationLike implementations lack it
        if problem:
            raise VerificationError(problem)
        if len(raw.data) > MAX_ENVELOPE_BYTES:
            raise LimitExceeded(
                f"{source} is too large: {len(raw.data)} bytes, the limit is {MAX_ENVELOPE_BYTES}"
            )
        # 2. envelope and material
        envelope, material = decode_attestation(raw)
        # 3. signature
        identities = verify_attestation(envelope, material, trust)
    except ProvgateError as err:
        return _rejected(source, str(err))
    except Exception as err:
        log.debug("%s: unexpected error before the signature verified", source, exc_info=True)
        return _rejected(source, _unexpected(source, err))
    signer = identities[0].to_signer_dict()
    try:
        return _read_statement(source, envelope.payload, image, identities, signer)
    except Exception as err:
        log.debug("%s: unexpected error reading a verified statement", source, exc_info=True)
        return _rejected(source, _unexpected(source, err), signer=signer, unusable=True)


def _read_statement(
    source: str,
    payload: bytes,
    image: ImageReference,
    identities: Sequence[SignerIdentity],
    signer: Mapping[str, Any],
) -> Checked:
    """Steps 4 and 5 of :func:`check_attestation`, for a payload whose signature verified."""
    from attestation import intoto

    try:
        # 4. statement
        doc = load_json(payload, max_bytes=MAX_STATEMENT_BYTES, what=f"{source}: statement")
        statement = intoto.from_dict(doc, source=f"{source}: statement")
    except ProvgateError as err:
        return _rejected(source, str(err), signer=signer, unusable=True)
    # 5. subject
    if not any(s.digest.get("sha256") == image.digest_hex for s in statement.subject):
        names = ", ".join(
            sorted({f"{s.name}@sha256:{s.digest.get('sha256', '?')}" for s in statement.subject})
        )
        mismatch = (
            f"{source}: no subject of the statement has the image digest {image.digest} "
            f"(subjects: {names[:300] or 'none'})"
        )
        return _rejected(source, mismatch, signer=signer, predicate_type=statement.predicate_type)
    report = AttestationReport(
        source=source,
        verified=True,
        predicate_type=statement.predicate_type,
        build_type=_build_type(doc),
        signer=signer,
    )
    verified = VerifiedStatement(statement=doc, signers=tuple(identities), source=source).with_encoding()
    return Checked(report=report, statement=verified)


def _unexpected(source: str, err: Exception) -> str:
    reason = " ".join(str(err).split()) or "no message"
    return f"{source}: could not be checked ({type(err).__name__}: {reason})"


def _rejected(
    source: str,
    reason: str,
    *,
    signer: Mapping[str, Any] | None = None,
    predicate_type: str | None = None,
    unusable: bool = False,
) -> Checked:
    if len(reason) > MAX_REASON_CHARS:
        reason = f"{reason[:MAX_REASON_CHARS]}... ({len(reason) - MAX_REASON_CHARS} more characters)"
    log.debug("%s: not used%s: %s", source, " (unusable, denies)" if unusable else "", reason)
    report = AttestationReport(
        source=source, verified=False, predicate_type=predicate_type, signer=signer or {}, error=reason
    )
    return Checked(report=report, unusable=unusable)


def findings(image: ImageReference, checked: Sequence[Checked]) -> tuple[list[Finding], list[Finding]]:
    """The gate's own violations about the attestations of ``image``: the ones a decision lists before
    the policy's (no attestation verified) and after them (a trusted signer signed something unusable)."""
    before = [] if any(c.statement is not None for c in checked) else [_no_verified(image, checked)]
    after = [_unusable(checked)] if any(c.unusable for c in checked) else []
    return before, after


def _no_verified(image: ImageReference, checked: Sequence[Checked]) -> Finding:
    if not checked:
        msg = f"no attestations were found for {image.pinned}"
    else:
        msg = f"none of the {len(checked)} attestation(s) of {image.pinned} verified and matched the image"
    return Finding(
        code=NO_VERIFIED_ATTESTATION,
        msg=msg,
        title="No verified attestation",
        description="An image is admitted only with provenance signed by a trusted signer for its digest.",
        solution="Sign the image's provenance with a trusted key (see the errors for each attestation) "
        "or add the signer's public key with --key.",
    )


def _unusable(checked: Sequence[Checked]) -> Finding:
    bad = [c.report for c in checked if c.unusable]
    first = bad[0].error or bad[0].source
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return Finding(
        code=UNUSABLE_STATEMENT,
        msg=f"a trusted signer signed a payload that is not a usable in-toto statement: {first}{more}",
        title="Unusable signed statement",
        description="Provenance that a trusted signer produced but the gate cannot read may hold what "
        "the policy needed to see, so it denies the image instead of ignoring it.",
        solution="Fix the signer that produced it, or remove the attestation from the image's registry.",
    )
