"""The one exception hierarchy of provgate.

Every message is a single line a user can act on: it names what was wrong and where (file, field,
image, registry). CLIs print ``str(err)`` and exit 2 for any :class:`ProvgateError` that reaches them.
"""

from __future__ import annotations


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


class VerificationError(ProvgateError):
    """A signature, certificate, identity or subject did not verify."""


class RegistryError(ProvgateError):
    """An OCI registry could not be reached or answered something unusable."""


class PolicyError(ProvgateError):
    """A policy could not be loaded or evaluated."""
