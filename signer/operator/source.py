"""Where the configuration comes from, and how a change reaches the running operator.

The key/value map is a file (``--config FILE``: the map itself or a whole ConfigMap, e.g. a mounted
``chains-config``) or the ConfigMap itself (``--configmap NAMESPACE/NAME``); the signing secrets are the
``signing-secrets`` Secret of the operator's namespace, or a directory it is mounted at. Both are read
again every few seconds; when anything changed (the map, a secret, the SPIRE trust bundle served by the
Workload API) a new :class:`~signer.operator.config.OperatorConfig` is built. A new configuration that
does not parse is reported (log, Event on the ConfigMap) and the last good one stays in force.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from attestation.errors import InputError, ProvgateError
from attestation.spiffe import TrustBundle
from signer.operator.config import (
    ConfigError,
    OperatorConfig,
    SigningSecrets,
    parse_config,
    parse_data_document,
)

log = logging.getLogger(__name__)

SECRET_FILES = ("cosign.key", "cosign.password", "x509.pem")
MAX_SECRET_FILE = 256 * 1024


class SourceApi(Protocol):
    """What reading the configuration needs of the API (:class:`signer.operator.kube.KubeApi`)."""

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class ConfigSource:
    api: SourceApi
    file: str | None = None
    configmap: tuple[str, str] | None = None  # (namespace, name)
    secret: tuple[str, str] | None = None  # (namespace, name) of the signing secrets
    secrets_dir: str | None = None

    def describe(self) -> str:
        return self.file or (f"ConfigMap {self.configmap[0]}/{self.configmap[1]}" if self.configmap else "")

    def read_data(self) -> dict[str, str]:
        if self.file is not None:
            try:
                text = Path(self.file).read_text(encoding="utf-8")
            except OSError as err:
                raise ConfigError(f"{self.file}: cannot read: {err.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{self.file}: not UTF-8 text") from None
            return parse_data_document(text, source=self.file)
        assert self.configmap is not None
        namespace, name = self.configmap
        obj = self.api.get_configmap(namespace, name)
        if obj is None:
            raise ConfigError(f"ConfigMap {namespace}/{name} does not exist")
        data = obj.get("data") or {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"ConfigMap {namespace}/{name}: data must map keys to strings")
        return dict(data)

    def read_secrets(self) -> SigningSecrets:
        if self.secrets_dir is not None:
            files = {}
            for name in SECRET_FILES:
                path = Path(self.secrets_dir) / name
                if path.is_file():
                    files[name] = path.read_bytes()[:MAX_SECRET_FILE]
            return SigningSecrets(files, source=f"signing secrets directory {self.secrets_dir}")
        if self.secret is None:
            return SigningSecrets()
        namespace, name = self.secret
        obj = self.api.get_secret(namespace, name)
        source = f"Secret {namespace}/{name}"
        if obj is None:
            return SigningSecrets(source=f"{source} (which does not exist)")
        decoded = {}
        for key, value in (obj.get("data") or {}).items():
            if key in SECRET_FILES and isinstance(value, str):
                try:
                    decoded[key] = base64.b64decode(value, validate=True)[:MAX_SECRET_FILE]
                except binascii.Error:
                    raise ConfigError(f"{source}: {key} is not base64") from None
        return SigningSecrets(decoded, source=source)

    def configmap_object(self) -> dict[str, Any] | None:
        if self.configmap is None:
            return None
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"namespace": self.configmap[0], "name": self.configmap[1]},
        }


BundleFetcher = Callable[[Mapping[str, str]], TrustBundle | None]


def workload_api_bundle(data: Mapping[str, str]) -> TrustBundle | None:
    """The SPIRE trust bundle from ``provgate.spire.socket`` when enforcement needs one and no bundle file
    is configured (a file wins: it can keep retired CAs, the live bundle drops them)."""
    if (data.get("provgate.spire.enforce-nonfalsifiability") or "none").strip() != "spire":
        return None
    if (data.get("provgate.spire.trust-bundle") or "").strip():
        return None
    socket = (data.get("provgate.spire.socket") or "").strip()
    if not socket:
        return None
    from signer.spire.trust import bundle_from_workload_api

    trust_domain = (data.get("provgate.spire.trust-domain") or "example.org").strip()
    return bundle_from_workload_api(socket, trust_domain)


def _fingerprint(data: Mapping[str, str], secrets: SigningSecrets, bundle: TrustBundle | None) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(f"{key}\0{data[key]}\0".encode())
    for name in sorted(secrets.files):
        digest.update(name.encode() + b"\0" + secrets.files[name] + b"\0")
    digest.update(secrets.source.encode())
    if bundle is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        for cert in sorted(c.public_bytes(Encoding.DER) for c in bundle.authorities):
            digest.update(cert)
    return digest.hexdigest()


class ConfigHolder:
    """The configuration in force; :meth:`refresh` reads the source and swaps in a new one if it changed
    and parses. ``on_change`` is told of every new configuration (metrics, logs)."""

    def __init__(
        self,
        source: ConfigSource,
        *,
        bundle_fetcher: BundleFetcher = workload_api_bundle,
        on_change: Callable[[OperatorConfig], None] | None = None,
    ) -> None:
        self.source = source
        self.bundle_fetcher = bundle_fetcher
        self.on_change = on_change
        self._config: OperatorConfig | None = None
        self._fingerprint = ""
        self._failed_fingerprint = ""
        self.last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> OperatorConfig | None:
        with self._lock:
            return self._config

    def refresh(self) -> OperatorConfig:
        """Read and, when it changed, parse the configuration. :class:`ConfigError` (or another
        :class:`ProvgateError`) when it cannot be read or used; the previous one then stays in force."""
        data = self.source.read_data()
        secrets = self.source.read_secrets()
        bundle = self.bundle_fetcher(data)
        fingerprint = _fingerprint(data, secrets, bundle)
        with self._lock:
            if fingerprint == self._fingerprint and self._config is not None:
                return self._config
        try:
            config = parse_config(data, secrets, spire_bundle=bundle)
        except ProvgateError as err:
            if fingerprint != self._failed_fingerprint:
                self._failed_fingerprint = fingerprint
                self._report(err)
            raise
        with self._lock:
            self._config = config
            self._fingerprint = fingerprint
            self._failed_fingerprint = ""
            self.last_error = None
        for line in config.warnings:
            log.warning("%s: %s", self.source.describe(), line)
        if self.on_change is not None:
            self.on_change(config)
        return config

    def _report(self, err: ProvgateError) -> None:
        self.last_error = str(err)
        kept = " (the previous configuration stays in force)" if self._config is not None else ""
        log.error("%s: %s%s", self.source.describe(), err, kept)
        target = self.source.configmap_object()
        if target is not None:
            self.source.api.post_event(target, "Warning", "InvalidConfiguration", f"{err}{kept}")

    def watch(self, stopping: threading.Event, interval: float) -> None:
        """:meth:`refresh` every ``interval`` seconds until ``stopping`` is set (a thread's loop)."""
        while not stopping.wait(interval):
            try:
                self.refresh()
            except (InputError, ProvgateError):
                pass  # reported once by refresh(); the configuration in force stays
            except Exception as err:  # never let the watcher die: the next round may succeed
                log.warning("%s: reading the configuration failed: %s", self.source.describe(), err)
