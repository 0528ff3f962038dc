"""Registry credentials from the Pod's ``imagePullSecrets`` and its ServiceAccount's, read from the API
server with the gate's own ServiceAccount (RBAC: get secrets, get serviceaccounts), as policy-controller
does, for images in private registries.

Only read when a registry asks for credentials (a 401), once per request, and kept for that request
only. Credentials never reach a log line or a decision: :class:`Credentials` hides them in its repr, and
errors name the secret, never its content.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attestation.errors import InputError
from attestation.limits import MiB
from attestation.oci.auth import CredentialLookup, Credentials, credentials_from_config_json, registry_host

log = logging.getLogger(__name__)

MAX_SECRET_BYTES = 1 * MiB
SECRET_KEYS = (".dockerconfigjson", ".dockercfg")


class PullSecrets:
    """Reads pull secrets with one API client (in-cluster, or the kubeconfig given or in KUBECONFIG)."""

    def __init__(self, kubeconfig: Path | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            if self._kubeconfig is not None:
                self._api = config.new_client_from_config(config_file=str(self._kubeconfig))
            else:
                try:
                    configuration = client.Configuration()
                    config.load_incluster_config(client_configuration=configuration)
                    self._api = client.ApiClient(configuration)
                except config.ConfigException:
                    self._api = config.new_client_from_config()
        return self._api

    def _read(self, namespace: str, pod_spec: Mapping[str, Any]) -> dict[str, Credentials]:
        """Every credential of the pod's pull secrets, then of its ServiceAccount's (first wins)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self._client())
        names = [_secret_name(s) for s in pod_spec.get("imagePullSecrets") or []]
        account = pod_spec.get("serviceAccountName") or "default"
        if isinstance(account, str):
            try:
                sa = core.read_namespaced_service_account(account, namespace)
                names.extend(str(s.name or "") for s in sa.image_pull_secrets or [])
            except ApiException as err:
                if err.status != 404:
                    log.warning(
                        "serviceaccount %s/%s: cannot read it (HTTP %s)", namespace, account, err.status
                    )
        found: dict[str, Credentials] = {}
        for name in dict.fromkeys(n for n in names if n):
            try:
                secret = core.read_namespaced_secret(name, namespace)
            except ApiException as err:
                log.warning("pull secret %s/%s: cannot read it (HTTP %s)", namespace, name, err.status)
                continue
            for host, creds in _parse_secret(secret.data or {}, f"secret {namespace}/{name}").items():
                found.setdefault(host, creds)
        return found

    def lookup(self, namespace: str, pod_spec: Mapping[str, Any]) -> CredentialLookup:
        """A lookup for one request: the secrets are read at its first use, at most once."""
        loaded: asyncio.Future[dict[str, Credentials]] | None = None

        async def get(registry: str) -> Credentials | None:
            nonlocal loaded
            if loaded is None:
                loaded = asyncio.ensure_future(asyncio.to_thread(self._read, namespace, pod_spec))
            try:
                found = await asyncio.shield(loaded)
            except Exception as err:  # no pull secrets is not a reason to fail: the docker config may do
                log.warning("pull secrets of namespace %s: %s", namespace, type(err).__name__)
                return None
            return found.get(registry_host(registry))

        return get


def _secret_name(ref: Any) -> str:
    return ref.get("name", "") if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) else ""


def _parse_secret(data: Mapping[str, str | bytes], where: str) -> dict[str, Credentials]:
    for key in SECRET_KEYS:
        encoded = data.get(key)
        if not encoded:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            log.warning("%s: %s is not base64", where, key)
            return {}
        if len(raw) > MAX_SECRET_BYTES:
            log.warning("%s: %s is larger than %d bytes", where, key, MAX_SECRET_BYTES)
            return {}
        try:
            return credentials_from_config_json(json.loads(raw), where)
        except (ValueError, InputError) as err:
            log.warning("%s: %s is not a docker config: %s", where, key, type(err).__name__)
            return {}
    return {}
