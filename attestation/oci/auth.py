"""Registry credentials the way Docker finds them: ``config.json`` in ``$DOCKER_CONFIG`` (or
``~/.docker``), ``credHelpers`` per registry, a ``credsStore`` for all, then inline ``auths`` entries;
and the parsing of ``WWW-Authenticate`` challenges for the basic and bearer-token flows.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestation.errors import InputError
from attestation.limits import MiB, load_json

MAX_CONFIG_BYTES = 1 * MiB
MAX_HELPER_OUTPUT = 64 * 1024
HELPER_TIMEOUT = 20.0
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = {"index.docker.io", "docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    # An OAuth2 refresh token ("identitytoken", or a helper's "<token>" user) traded at the token realm.
    identity_token: str | None = None
    # A bearer token to send as it is ("registrytoken").
    registry_token: str | None = None
    source: str = "docker config"

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def registry_host(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``; Docker Hub aliases -> ``index.docker.io``: how docker
    config files and pull secrets name registries, made comparable with an image's registry."""
    return _host_of(key)


def _host_of(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``; Docker Hub aliases -> ``index.docker.io``."""
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0]
    return "index.docker.io" if host in _DOCKER_HUB_NAMES else host


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config.json to read: ``explicit`` (a file or a directory), ``$DOCKER_CONFIG``, ``~/.docker``."""
    if explicit is not None:
        path = Path(explicit)
        return path / "config.json" if path.is_dir() else path
    env = os.environ.get("DOCKER_CONFIG")
    base = Path(env) if env else Path.home() / ".docker"
    return base / "config.json"


@dataclass(frozen=True)
class DockerConfig:
    path: Path | None
    auths: Mapping[str, Mapping[str, Any]]
    creds_store: str | None
    cred_helpers: Mapping[str, str]

    @classmethod
    def load(cls, explicit: str | os.PathLike[str] | None = None) -> DockerConfig:
        """Read the config; a missing default file means no credentials, a missing explicit one errs."""
        path = config_path(explicit)
        if not path.exists():
            if explicit is not None:
                raise InputError(f"docker config {path} does not exist")
            return cls(None, {}, None, {})
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InputError(f"docker config {path}: cannot read: {err.strerror}") from None
        doc = load_json(data, max_bytes=MAX_CONFIG_BYTES, what=f"docker config {path}")
        if not isinstance(doc, dict):
            raise InputError(f"docker config {path}: not a JSON object")
        auths = doc.get("auths") or {}
        helpers = doc.get("credHelpers") or {}
        store = doc.get("credsStore") or None
        if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
            raise InputError(f"docker config {path}: 'auths' must map registries to objects")
        if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
            raise InputError(f"docker config {path}: 'credHelpers' must map registries to helper names")
        if store is not None and not isinstance(store, str):
            raise InputError(f"docker config {path}: 'credsStore' must be a string")
        return cls(
            path,
            {_host_of(k): v for k, v in auths.items()},
            store,
            {_host_of(k): v for k, v in helpers.items()},
        )

    def credentials(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (``host[:port]``), or None for anonymous access.

        Runs a credential helper when one is configured (this blocks; call it in a thread).
        """
        host = _host_of(registry)
        helper = self.cred_helpers.get(host) or self.creds_store
        if helper:
            found = run_helper(helper, host, where=str(self.path))
            if found is not None:
                return found
        entry = self.auths.get(host)
        if entry is None:
            return None
        return _from_auth_entry(entry, f"docker config {self.path} entry {host!r}")


def credentials_from_config_json(doc: object, where: str) -> dict[str, Credentials]:
    """Credentials by registry host from a docker ``config.json`` document (``{"auths": {...}}``) or the
    older ``.dockercfg`` one (the ``auths`` map itself), as Kubernetes keeps them in pull secrets."""
    if isinstance(doc, dict) and isinstance(doc.get("auths"), dict):
        doc = doc["auths"]
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise InputError(f"{where}: not a docker config (a map of registries to credentials)")
    out: dict[str, Credentials] = {}
    for key, entry in doc.items():
        found = _from_auth_entry(entry, f"{where} entry {_host_of(str(key))!r}")
        if found is not None:
            out.setdefault(_host_of(str(key)), found)
    return out


# Credentials that only the current task (and the tasks it starts) may use, looked up by registry host
# before the docker config: a server sets them per request, e.g. from the Pod's imagePullSecrets.
CredentialLookup = Callable[[str], Awaitable["Credentials | None"]]
scoped_credentials: ContextVar[CredentialLookup | None] = ContextVar(
    "provgate_scoped_credentials", default=None
)


def _from_auth_entry(entry: Mapping[str, Any], where: str) -> Credentials | None:
    if entry.get("registrytoken"):
        return Credentials(registry_token=str(entry["registrytoken"]), source=where)
    if entry.get("identitytoken"):
        return Credentials(identity_token=str(entry["identitytoken"]), source=where)
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InputError(f"{where}: 'auth' is not base64 of user:password") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InputError(f"{where}: 'auth' does not contain user:password")
    if username is None and password is None:
        return None
    return Credentials(username=str(username or ""), password=str(password or ""), source=where)


def run_helper(helper: str, host: str, *, where: str) -> Credentials | None:
    """``docker-credential-<helper> get`` with the server URL on stdin (Docker's helper protocol)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", helper):
        raise InputError(f"docker config {where}: invalid credential helper name {helper!r}")
    program = f"docker-credential-{helper}"
    server = DOCKER_HUB_AUTH_KEY if host == "index.docker.io" else host
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise InputError(f"credential helper {program} (from docker config {where}) is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise InputError(
            f"credential helper {program} did not answer for {host} in {HELPER_TIMEOUT}s"
        ) from None
    out = proc.stdout[:MAX_HELPER_OUTPUT]
    if proc.returncode != 0:
        message = (out or proc.stderr[:500]).decode("utf-8", "replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise InputError(
            f"credential helper {program} failed for {host}: {message.splitlines()[0] if message else ''}"
        )
    try:
        doc = json.loads(out)
        username, secret = doc.get("Username", ""), doc.get("Secret", "")
    except (ValueError, AttributeError):
        raise InputError(
            f"credential helper {program} printed something that is not JSON for {host}"
        ) from None
    source = f"credential helper {program}"
    if username == "<token>":
        return Credentials(identity_token=secret, source=source)
    return Credentials(username=username, password=secret, source=source)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: Mapping[str, str]


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` challenge (registries send one)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username or ''}:{creds.password or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
