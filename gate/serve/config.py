"""``gate serve --config FILE``: the server's configuration, read and checked in one place.

The keys are the ``gate verify`` flag names (camelCase where a flag has a dash), so a policy author's
command line becomes a server configuration without translation (DESIGN.md §3); ``config/samples/gate.yaml``
documents every key. Relative paths are relative to the configuration file. Every mistake is an
:class:`~attestation.errors.InputError` naming the key, raised before the server listens.

Trust kinds are read by one function each (:data:`TRUST_KINDS`): adding a kind is adding a function.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from attestation.errors import InputError
from attestation.limits import MiB, check_json_depth
from attestation.spiffe import parse_spiffe_id, split_bundle_arg, trust_domain_of
from gate.config import DEFAULT_TIMEOUT, ENGINES, EngineOptions, GateConfig
from gate.serve.cpus import usable_cpus
from gate.trust_keyless import keyless_entry_from_config

MAX_CONFIG_BYTES = 1 * MiB
Mode = Literal["enforce", "warn"]
NoMatch = Literal["deny", "warn", "allow"]

# What the API server allows a webhook at most (timeoutSeconds 1..30); the per-request deadline is taken
# from its ?timeout= and never exceeds this.
MAX_WEBHOOK_TIMEOUT = 30.0
# Namespaces the gate never checks unless told otherwise: the control plane's own. The gate's own
# namespace is added by the manifests (config/gate), which know its name.
DEFAULT_EXEMPT_NAMESPACES = ("kube-system",)
# Each worker holds its own caches and policy engine: more than this is memory, not throughput.
MAX_WORKERS = 64
# workers: auto starts one worker per usable CPU (gate.serve.cpus), at most this many: each worker costs
# its own memory (docs/admission.md "Worker model"), and a pod without a CPU limit would otherwise start
# one per CPU of the node.
AUTO_WORKERS_MAX = 4


def auto_workers() -> int:
    """The worker count ``workers: auto`` gives on this machine."""
    return min(usable_cpus(), AUTO_WORKERS_MAX)


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class VerifyApiConfig:
    """Who may call ``POST /v1/verify``: anyone when the server listens on loopback only, else a caller
    with the bearer token in ``bearer_token_file`` or, on the separate ``listen`` address, a client
    certificate issued by ``client_ca_file``."""

    enabled: bool = True
    bearer_token_file: Path | None = None
    client_ca_file: Path | None = None
    listen: tuple[str, int] | None = None  # the client-certificate listener


@dataclass(frozen=True)
class CacheConfig:
    # Seconds a verdict (allowed or denied) is served from memory; a new attestation is seen at most this
    # much later. 0 turns the verdict cache off.
    ttl: float = 300.0
    # Memory the verdicts may take, estimated from their JSON size.
    max_bytes: int = 64 * MiB
    # Seconds a tag -> digest resolution is reused; a moved tag is seen at most this much later.
    tag_ttl: float = 10.0


@dataclass(frozen=True)
class ServeConfig:
    path: Path
    listen: tuple[str, int]
    tls: TlsConfig
    gate: GateConfig
    mode: Mode = "enforce"
    exempt_namespaces: tuple[str, ...] = DEFAULT_EXEMPT_NAMESPACES
    images: tuple[str, ...] = ("**",)  # globs of the images the policy applies to
    no_match: NoMatch = "deny"  # what an image outside ``images`` gets
    require_digest: bool = False  # /validate refuses an image not pinned by digest
    image_pull_secrets: bool = False  # also read the Pod's and its ServiceAccount's pull secrets
    cache: CacheConfig = field(default_factory=CacheConfig)
    # Seconds one verification may take; an admission request's own deadline is shorter (?timeout=).
    verify_timeout: float = 25.0
    max_body_bytes: int = 8 * MiB
    verify_api: VerifyApiConfig = field(default_factory=VerifyApiConfig)
    # Seconds between looks at the policy, data, trust and configuration files.
    reload_interval: float = 2.0
    kubeconfig: Path | None = None  # else in-cluster, else KUBECONFIG (only with image_pull_secrets)
    # Processes serving the listening sockets, each with its own event loop and caches (gate.serve.workers).
    workers: int = 1
    workers_auto: bool = False  # workers was "auto": the count above is what this machine gave
    # Seconds a worker's event loop may go without running before the supervisor replaces it: a stuck
    # worker keeps taking connections from the shared sockets, and the others would still say ready.
    worker_stall: float = 30.0

    def watched_files(self) -> tuple[Path, ...]:
        """What a reload depends on: this file, and every policy, data and trust path it names."""
        g = self.gate
        paths = [
            self.path,
            *g.policy_paths,
            *g.data_paths,
            *g.key_files,
            *(Path(split_bundle_arg(b)[1]) for b in g.trust_bundles),
            *g.tsa_cert_files,
            *(Path(k.trusted_root) for k in g.keyless if k.trusted_root),
        ]
        if g.ca_file is not None:
            paths.append(g.ca_file)
        if self.verify_api.bearer_token_file is not None:
            paths.append(self.verify_api.bearer_token_file)
        return tuple(paths)

    @property
    def loopback_only(self) -> bool:
        return _is_loopback(self.listen[0])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- reading -----------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one mapping of the file, naming the key path in every error."""

    def __init__(self, doc: Mapping[str, Any], where: str, base: Path) -> None:
        self.doc, self.where, self.base = doc, where, base
        self.seen: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str) -> Any:
        self.seen.add(key)
        return self.doc.get(key)

    def sub(self, key: str) -> _Reader:
        value = self.get(key)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise InputError(f"{self._name(key)}: must be a mapping")
        return _Reader(value, self._name(key), self.base)

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise InputError(f"{self._name(key)}: must be a non-empty string")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InputError(f"{self._name(key)}: must be a string or a list of non-empty strings")
        return tuple(value)

    def path(self, key: str) -> Path | None:
        value = self.string(key)
        return None if value is None else self.resolve(value)

    def paths(self, key: str) -> tuple[Path, ...]:
        return tuple(self.resolve(v) for v in self.strings(key))

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.base / path

    def number(self, key: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{self._name(key)}: must be a number")
        if value < low or (high is not None and value > high):
            bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise InputError(f"{self._name(key)}: {value} is out of range (must be {bound})")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int, other: str = "") -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{self._name(key)}: must be a whole number{' ' + other if other else ''}")
        if not low <= value <= high:
            raise InputError(f"{self._name(key)}: {value} is out of range (must be between {low} and {high})")
        return value

    def size(self, key: str, default: int) -> int:
        """A byte count: a number, or a string with a Ki/Mi/Gi suffix as Kubernetes writes them."""
        value = self.get(key)
        if value is None:
            return default
        units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
        if isinstance(value, str) and value[-2:] in units and value[:-2].isdigit():
            return int(value[:-2]) * units[value[-2:]]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise InputError(f"{self._name(key)}: must be a byte count such as 67108864 or 64Mi")

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self._name(key)}: must be true or false")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise InputError(f"{self._name(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def check_unknown(self) -> None:
        unknown = sorted(set(self.doc) - self.seen)
        if unknown:
            where = f" in {self.where}" if self.where else ""
            raise InputError(f"unknown key{'s' if len(unknown) > 1 else ''}{where}: {', '.join(unknown)}")


def parse_listen(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise InputError(f"{where}: {value!r} must be HOST:PORT, e.g. 127.0.0.1:8443 or 0.0.0.0:8443")
    return host.strip("[]"), int(port)


# -- trust: one function per kind --------------------------------------------------------------------

TrustLoader = Callable[[Any, _Reader, str], dict[str, Any]]


def _trust_keys(value: Any, trust: _Reader, where: str) -> dict[str, Any]:
    return {"key_files": trust.paths("keys")}


def _trust_spiffe(value: Any, trust: _Reader, where: str) -> dict[str, Any]:
    if not isinstance(value, list):
        raise InputError(f"{where}: must be a list of {{trustBundle, spiffeId, tsaCerts}} entries")
    bundles: list[str] = []
    ids: list[str] = []
    tsa: list[Path] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}[{i}]: must be a mapping with trustBundle and spiffeId")
        r = _Reader(entry, f"{where}[{i}]", trust.base)
        bundle = r.paths("trustBundle")
        spiffe_ids = r.strings("spiffeId")
        if not bundle or not spiffe_ids:
            raise InputError(f"{where}[{i}]: needs trustBundle and spiffeId")
        # An entry's bundle vouches only for the trust domain of its own SPIFFE IDs (issue 10 finding 1).
        domains = {trust_domain_of(parse_spiffe_id(s, what=f"{where}[{i}].spiffeId")) for s in spiffe_ids}
        if len(domains) != 1:
            raise InputError(
                f"{where}[{i}]: spiffeId names several trust domains ({', '.join(sorted(domains))}); "
                "give one entry per trust domain, each with that domain's trustBundle"
            )
        [domain] = domains
        bundles.extend(f"{domain}={b}" for b in bundle)
        ids.extend(spiffe_ids)
        tsa.extend(r.paths("tsaCerts"))
        r.check_unknown()
    return {"trust_bundles": tuple(bundles), "spiffe_ids": tuple(ids), "tsa_cert_files": tuple(tsa)}


def _trust_keyless(value: Any, trust: _Reader, where: str) -> dict[str, Any]:
    if not isinstance(value, list):
        raise InputError(
            f"{where}: must be a list of {{certificateIdentity, certificateOidcIssuer, ...}} entries"
        )
    entries = []
    for i, doc in enumerate(value):
        entry = keyless_entry_from_config(doc, where=f"{where}[{i}]")
        if entry.trusted_root is not None:  # relative to this file, like every other path in it
            entry = replace(entry, trusted_root=str(trust.resolve(entry.trusted_root)))
        entries.append(entry)
    return {"keyless": tuple(entries)}


TRUST_KINDS: dict[str, TrustLoader] = {
    "keys": _trust_keys,
    "spiffe": _trust_spiffe,
    "keyless": _trust_keyless,
}


def _read_trust(trust: _Reader) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for kind, load in TRUST_KINDS.items():
        value = trust.get(kind)
        if value is not None:
            fields.update(load(value, trust, f"trust.{kind}"))
    trust.check_unknown()
    if not fields.get("key_files") and not fields.get("trust_bundles") and not fields.get("keyless"):
        raise InputError("trust: configure at least one entry (trust.keys, trust.spiffe or trust.keyless)")
    return fields


# -- the whole file ----------------------------------------------------------------------------------


def parse_config(doc: Any, path: Path) -> ServeConfig:
    """A :class:`ServeConfig` from the parsed file ``doc`` (found at ``path``)."""
    if not isinstance(doc, Mapping):
        raise InputError(f"{path}: the configuration must be a mapping of keys")
    check_json_depth(doc, what=str(path))
    top = _Reader(doc, "", path.parent)
    listen = parse_listen(top.string("listen", "127.0.0.1:8443") or "", "listen")
    tls_r = top.sub("tls")
    cert, key = tls_r.path("certFile"), tls_r.path("keyFile")
    tls_r.check_unknown()
    if cert is None or key is None:
        raise InputError("tls: certFile and keyFile are required (gate serve speaks HTTPS only)")
    registry = top.sub("registry")
    gate_fields: dict[str, Any] = {
        "policy_paths": top.paths("policy"),
        "data_paths": top.paths("data"),
        **_read_trust(top.sub("trust")),
        "engine": top.choice("engine", ENGINES, "embedded"),
        "opa_url": top.string("opaUrl"),
        "insecure_registries": registry.strings("insecure"),
        "ca_file": registry.path("caFile"),
        "docker_config": registry.path("dockerConfig"),
        # A long-lived server pays aiohttp's import once and saves about a quarter of each first look's CPU
        # (attestation.oci.transport).
        "registry_transport": "aiohttp",
    }
    pull_secrets = registry.flag("imagePullSecrets", False)
    registry.check_unknown()
    verify_timeout = top.number("timeout", 25.0, low=0.1, high=300.0)
    gate_fields["timeout"] = verify_timeout
    engine = top.sub("engineOptions")
    gate_fields["engine_options"] = EngineOptions(
        pool_size=int(engine.number("poolSize", 4, low=1, high=64)),
        borrow_timeout=engine.number("borrowTimeout", 10.0, low=0.01),
        eval_timeout=engine.number("evalTimeout", 10.0, low=0.01),
        opa_timeout=engine.number("opaTimeout", 30.0, low=0.01),
    )
    engine.check_unknown()
    namespaces = top.sub("namespaces")
    exempt = namespaces.strings("exempt", DEFAULT_EXEMPT_NAMESPACES)
    namespaces.check_unknown()
    images = top.sub("images")
    globs = images.strings("check", ("**",))
    no_match = images.choice("noMatch", ("deny", "warn", "allow"), "deny")
    require_digest = images.flag("requireDigest", False)
    images.check_unknown()
    cache = top.sub("cache")
    cache_config = CacheConfig(
        ttl=cache.number("ttl", 300.0, high=7 * 86400),
        max_bytes=cache.size("maxBytes", 64 * MiB),
        tag_ttl=cache.number("tagTtl", 10.0, high=3600),
    )
    cache.check_unknown()
    api = top.sub("verifyApi")
    api_listen = api.string("listen")
    verify_api = VerifyApiConfig(
        enabled=api.flag("enabled", True),
        bearer_token_file=api.path("bearerTokenFile"),
        client_ca_file=api.path("clientCaFile"),
        listen=parse_listen(api_listen, "verifyApi.listen") if api_listen else None,
    )
    api.check_unknown()
    if (verify_api.listen is None) != (verify_api.client_ca_file is None):
        raise InputError(
            "verifyApi: listen and clientCaFile go together (a listener for client certificates)"
        )
    workers_auto = top.get("workers") in (None, "auto")
    workers = (
        auto_workers()
        if workers_auto
        else top.integer("workers", 1, low=1, high=MAX_WORKERS, other='or "auto"')
    )
    config = ServeConfig(
        path=path,
        listen=listen,
        tls=TlsConfig(cert_file=cert, key_file=key),
        gate=GateConfig(**gate_fields),
        mode="warn" if top.choice("mode", ("enforce", "warn"), "enforce") == "warn" else "enforce",
        exempt_namespaces=exempt,
        images=globs,
        no_match="deny" if no_match == "deny" else "warn" if no_match == "warn" else "allow",
        require_digest=require_digest,
        image_pull_secrets=pull_secrets,
        cache=cache_config,
        verify_timeout=verify_timeout,
        max_body_bytes=top.size("maxRequestBytes", 8 * MiB),
        verify_api=verify_api,
        reload_interval=top.number("reloadInterval", 2.0, low=0.1, high=3600),
        kubeconfig=top.path("kubeconfig"),
        workers=workers,
        workers_auto=workers_auto,
        worker_stall=top.number("workerStallSeconds", 30.0, low=1, high=3600),
    )
    top.check_unknown()
    if config.max_body_bytes < 64 * 1024:
        raise InputError("maxRequestBytes: at least 64Ki (an AdmissionReview carries the whole object)")
    return config


def load_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read and check the configuration file at ``path``."""
    import yaml

    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise InputError(f"{file}: {size} bytes, the limit is {MAX_CONFIG_BYTES}")
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"config file {file}: cannot read ({err.strerror or err})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"config file {file}: not valid YAML: {' '.join(str(err).split())}") from None
    try:
        return parse_config(doc, file.absolute())
    except InputError as err:
        raise InputError(f"config file {file}: {err}") from None


def with_overrides(config: ServeConfig, **changes: Any) -> ServeConfig:
    """``config`` with some fields replaced (tests, ``gate serve --listen``)."""
    return replace(config, **changes)


__all__ = [
    "AUTO_WORKERS_MAX",
    "DEFAULT_TIMEOUT",
    "MAX_WEBHOOK_TIMEOUT",
    "MAX_WORKERS",
    "TRUST_KINDS",
    "CacheConfig",
    "ServeConfig",
    "TlsConfig",
    "VerifyApiConfig",
    "auto_workers",
    "load_config",
    "parse_config",
]
