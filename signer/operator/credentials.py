"""Registry credentials for a run's attestation, found where Tekton Chains looks (its authentication
doc): the run's pod template ``imagePullSecrets``, then its ServiceAccount's ``secrets`` and
``imagePullSecrets``, all in the run's namespace, of type ``kubernetes.io/dockerconfigjson`` or
``kubernetes.io/dockercfg``. The first secret that has an entry for a registry wins.

Pure parsing here; the operator reads the objects (:mod:`signer.operator.kube`). Credentials are only
ever handed to the registry client: their ``repr`` hides them, and what is logged or posted in Events
names the Secrets, never their content.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attestation.oci.auth import Credentials

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
MAX_SECRETS = 50
MAX_SECRET_BYTES = 1024 * 1024
_DOCKER_HUB = {"index.docker.io", "docker.io", "registry-1.docker.io"}


def registry_host(key: str) -> str:
    """A docker config key (``https://host:port/v1/``, ``host:port``) as the registry client names it."""
    host = re.sub(r"^[a-z]+://", "", key.strip().lower()).split("/", 1)[0]
    return "index.docker.io" if host in _DOCKER_HUB else host


def service_account(run: Mapping[str, Any]) -> str:
    """The ServiceAccount the run's pods run as: ``spec.serviceAccountName`` (TaskRun) or
    ``spec.taskRunTemplate.serviceAccountName`` (PipelineRun), else ``default``."""
    spec = run.get("spec") or {}
    name = spec.get("serviceAccountName")
    if not name:
        name = (spec.get("taskRunTemplate") or {}).get("serviceAccountName")
    return str(name) if isinstance(name, str) and name else "default"


def _names(entries: Any) -> list[str]:
    if not isinstance(entries, list):
        return []
    return [str(e["name"]) for e in entries if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def pod_template_pull_secrets(run: Mapping[str, Any]) -> list[str]:
    spec = run.get("spec") or {}
    template = spec.get("podTemplate") or (spec.get("taskRunTemplate") or {}).get("podTemplate") or {}
    return _names(template.get("imagePullSecrets"))


def service_account_secrets(sa: Mapping[str, Any] | None) -> list[str]:
    """``secrets`` then ``imagePullSecrets`` of a ServiceAccount object (None: it does not exist)."""
    if not sa:
        return []
    return _names(sa.get("secrets")) + _names(sa.get("imagePullSecrets"))


def secret_names(run: Mapping[str, Any], sa: Mapping[str, Any] | None) -> list[str]:
    """Where to look, in order, each name once, at most :data:`MAX_SECRETS`."""
    return list(dict.fromkeys(pod_template_pull_secrets(run) + service_account_secrets(sa)))[:MAX_SECRETS]


def _entry(value: Any, where: str) -> Credentials | None:
    if not isinstance(value, Mapping):
        return None
    if value.get("identitytoken"):
        return Credentials(identity_token=str(value["identitytoken"]), source=where)
    if value.get("registrytoken"):
        return Credentials(registry_token=str(value["registrytoken"]), source=where)
    username, password = value.get("username"), value.get("password")
    auth = value.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return None
    return Credentials(username=username, password=password, source=where)


def credentials_from_secret(secret: Mapping[str, Any]) -> dict[str, Credentials]:
    """Registry host -> credentials of one Secret object (as the API returns it, data base64); empty for
    a Secret of another type or one that does not parse (a bad pull secret must not stop the others)."""
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace', '')}/{meta.get('name', '')}"
    kind = secret.get("type")
    key = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}.get(str(kind))
    data = secret.get("data") or {}
    if key is None or not isinstance(data, Mapping) or not isinstance(data.get(key), str):
        return {}
    try:
        raw = base64.b64decode(data[key], validate=True)
        if len(raw) > MAX_SECRET_BYTES:
            return {}
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(doc, Mapping):
        return {}
    entries = doc.get("auths") if kind == DOCKERCONFIGJSON else doc
    if not isinstance(entries, Mapping):
        return {}
    out: dict[str, Credentials] = {}
    for registry, value in entries.items():
        found = _entry(value, where)
        if found is not None and isinstance(registry, str):
            out.setdefault(registry_host(registry), found)
    return out


@dataclass(frozen=True)
class RunCredentials:
    """What was found for one run: credentials per registry, and where it looked (for Events)."""

    service_account: str
    secrets: tuple[str, ...]  # the Secret names looked at, in order
    by_registry: Mapping[str, Credentials] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # Secrets named but not found

    def describe(self) -> str:
        where = f"ServiceAccount {self.service_account}"
        if not self.secrets:
            return f"{where} and the run's pod template name no registry secrets"
        names = ", ".join(self.secrets)
        found = ", ".join(sorted(self.by_registry)) or "no registry"
        text = f"{where} and the run's pod template name secrets {names}, with credentials for {found}"
        if self.missing:
            text += f" ({', '.join(self.missing)} not found)"
        return text


def merge(
    service_account_name: str, names: Sequence[str], secrets: Mapping[str, Mapping[str, Any] | None]
) -> RunCredentials:
    """Credentials from ``secrets`` (name -> Secret object, None when it does not exist) in the order of
    ``names``; the first Secret with an entry for a registry wins."""
    by_registry: dict[str, Credentials] = {}
    missing = []
    for name in names:
        secret = secrets.get(name)
        if secret is None:
            missing.append(name)
            continue
        for registry, creds in credentials_from_secret(secret).items():
            by_registry.setdefault(registry, creds)
    return RunCredentials(service_account_name, tuple(names), by_registry, tuple(missing))
