"""The one exception hierarchy of provgate.

Every message is a single line a user can act on: it names what was wrong and where (file, field,
image, registry). CLIs print ``str(err)`` and exit 2 for any :class:`ProvgateError` that reaches them.

A failure is permanent unless its error is also a :class:`TransientError`: the same input fails the same
way, so a long-lived caller (the operator, the admission server) never retries it and never caches a
transient one. Which is which, decided once here:

* transient: a registry that cannot be reached, times out, or answers 429/5xx until the retries run out
  (:class:`RegistryUnavailable`); the SPIFFE Workload API down or not (yet) issuing the identity asked for
  (:class:`WorkloadApiUnavailable`); a timestamp authority that cannot be reached or answers 429/5xx
  (:class:`TimestampUnavailable`); Fulcio, the transparency log or a TSA of keyless signing that cannot be
  reached, times out or answers 429/5xx (:class:`SigningServiceUnavailable`);
* permanent: everything else, e.g. a bad or incomplete run, a run whose SPIRE-signed results do not verify
  (:class:`ResultsNotVerified`), an unusable key or wrong password, a registry that refuses the
  credentials (401/403: retrying with the same credentials cannot help), an image the registry does not
  hold, content that does not match its digest, a TSA that answers something other than a good token,
  an identity token that Fulcio (or our own claim check) refuses (:class:`IdentityTokenRefused`).
"""

from __future__ import annotations

from collections.abc import Sequence


class ProvgateError(Exception):
    """Base class. ``str()`` is a one-line, actionable message."""


class InputError(ProvgateError):
    """The user's input is unusable: unreadable file, wrong kind of object, missing field."""


class LimitExceeded(InputError):
    """An input is larger or deeper than the configured bound."""


class KeyLoadError(InputError):
    """A key file could not be read or decrypted."""


class PasswordRequired(KeyLoadError):
    """An encrypted key needs a password and none was given (a CLI adds how to give one)."""


class WrongPasswordError(KeyLoadError):
    """An encrypted key did not decrypt with the password given."""


class TransientError(ProvgateError):
    """Mix-in: a service the call needs did not answer (in time); the same call may succeed later."""


class WorkloadApiUnavailable(KeyLoadError, TransientError):
    """The SPIFFE Workload API (the SPIRE agent) did not answer, or has not issued the identity asked for."""


class TimestampUnavailable(InputError, TransientError):
    """A timestamp authority could not be reached or answered 429/5xx."""


class SigningServiceUnavailable(TransientError):
    """A service keyless signing needs (Fulcio, the transparency log, a TSA, the TUF repository of the
    public-good instance) could not be reached, timed out or answered 429/5xx. Nothing was stored."""


class IdentityTokenRefused(InputError):
    """The identity token for keyless signing lacks a claim, has a wrong one, or Fulcio refused it."""


class VerificationError(ProvgateError):
    """A signature, certificate, identity or subject did not verify."""


class ResultsNotVerified(VerificationError):
    """A run's SPIRE-signed results do not verify, so it gets no provenance (enforce-nonfalsifiability
    ``spire``). ``reasons`` says why, one line each."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)


class RegistryError(ProvgateError):
    """An OCI registry could not be reached or answered something unusable."""


class RegistryAuthError(RegistryError):
    """A registry refused the credentials (401/403), or asked for some and none were found. Permanent for
    one call; a caller whose credentials can change without it (the operator reads them from the
    cluster) may retry."""


class RegistryUnavailable(RegistryError, TransientError):
    """A registry could not be reached, kept answering 429/5xx, or did not answer before the deadline."""


class PolicyError(ProvgateError):
    """A policy could not be loaded or evaluated."""
