"""The operator's configuration: the ``data`` of Tekton Chains' ``chains-config`` ConfigMap (flat dotted
keys, string values) plus provgate's own keys under ``provgate.``, turned into an :class:`OperatorConfig`.

Pure: :func:`parse_config` takes the key/value map, the signing secrets (Chains' ``signing-secrets``:
``cosign.key``, ``cosign.password``, ``x509.pem``) and, for SPIRE enforcement, a trust bundle fetched by
the caller, and either returns a configuration that can attest or raises :class:`ConfigError` naming
the key. Unknown keys come back as warnings, never as errors (a Chains ConfigMap may carry keys of a
newer Chains).

A signing backend is one entry of :data:`SIGNERS`: the value of ``artifacts.*.signer`` it answers to,
the keys it reads, and a factory from the configuration and the secrets to a
:class:`signer.signing.SigningBackend`. Adding a backend is adding one factory and one entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from attestation.errors import InputError, ProvgateError
from attestation.spiffe import TrustBundle, parse_spiffe_id, parse_trust_bundle, validate_trust_domain
from signer.attest import ArtifactConfig, AttestConfig
from signer.provenance import BUILD_TYPES, DEFAULT_BUILDER_ID, canonical_format
from signer.signing import SigningBackend
from signer.spire.nonfalsifiability import MODES, SpireConfig
from signer.spire.registration import DEFAULT_NODE_ALIAS_PREFIX
from signer.storage import StorageConfig

PROVGATE = "provgate."


class ConfigError(InputError):
    """The configuration cannot be used; the message names the key and what is wrong with it."""


@dataclass(frozen=True)
class SigningSecrets:
    """The files of Chains' ``signing-secrets`` Secret (or the directory it is mounted at), by name."""

    files: Mapping[str, bytes] = field(default_factory=dict)
    source: str = "signing-secrets"

    def get(self, name: str) -> bytes | None:
        value = self.files.get(name)
        return value if value else None


@dataclass(frozen=True)
class RegistrationConfig:
    """provgate's per-TaskRun SPIRE registration (TEP-0089): entries made through ``spire-server``."""

    server_socket: str
    trust_domain: str
    cli: str | None = None  # the spire-server binary; None: from PATH
    node_alias_prefix: str = DEFAULT_NODE_ALIAS_PREFIX
    svid_ttl: int | None = None  # seconds; None: the server's default
    entry_ttl: int = 24 * 3600  # the server drops an entry by itself after this (a safety net)


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator needs to decide about and attest runs; made once per config version."""

    taskrun: AttestConfig | None  # None: TaskRuns are not attested (Chains: signer none or no storage)
    pipelinerun: AttestConfig | None
    retry_delay: float = 1.0  # seconds before the first retry; doubles each retry
    child_timeout: float = 600.0  # how long a PipelineRun waits for its child TaskRuns to be signed
    managed_by: frozenset[str] = frozenset()  # extra spec.managedBy values to attest (Chains' filter)
    registration: RegistrationConfig | None = None
    warnings: tuple[str, ...] = ()  # unknown keys, ignored settings: one line each
    digest: str = ""  # of the key/value map, for logs and the config-info metric

    def for_kind(self, kind: str) -> AttestConfig | None:
        """What :func:`signer.attest.attest` is given for runs of ``kind`` (None: not attested)."""
        return self.taskrun if kind == "TaskRun" else self.pipelinerun

    @property
    def spire(self) -> SpireConfig:
        return next((c.spire for c in (self.taskrun, self.pipelinerun) if c is not None), SpireConfig())


# --------------------------------------------------------------------------------------------- values


def _bool(data: Mapping[str, str], key: str, default: bool = False) -> bool:
    """Go's strconv.ParseBool, as Chains reads its booleans; anything else is an error here."""
    raw = data.get(key)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ConfigError(f"{key}: {raw!r} is not a boolean (true or false)")


def _number(data: Mapping[str, str], key: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = data.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{key}: {raw} is outside {minimum:g}..{maximum:g}")
    return value


def _list(data: Mapping[str, str], key: str, default: str = "") -> tuple[str, ...]:
    """A comma-separated set, trimmed, empty items dropped, order kept (Chains' set-valued keys)."""
    raw = data.get(key, default)
    return tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))


def _text(data: Mapping[str, str], key: str, default: str = "") -> str:
    return (data.get(key) or default).strip()


# --------------------------------------------------------------------------------------------- signers

SignerFactory = Callable[[Mapping[str, str], SigningSecrets], SigningBackend]


@dataclass(frozen=True)
class SignerSpec:
    """One value of ``artifacts.*.signer``: the keys its backend reads and how it is made."""

    keys: tuple[str, ...]
    factory: SignerFactory


def x509_signer(data: Mapping[str, str], secrets: SigningSecrets) -> SigningBackend:
    """Chains' ``x509`` signer: keyless (a Fulcio certificate, the signature in a transparency log) when
    ``signers.x509.fulcio.enabled``; else ``cosign.key`` (+ ``cosign.password``) from the signing
    secrets, else ``x509.pem`` (PKCS#8, unencrypted), as Chains looks for them."""
    from attestation.keys import load_private_key
    from signer.signing.key import KeySigning

    if _bool(data, "signers.x509.fulcio.enabled"):
        return keyless_signer(data)
    cosign_key = secrets.get("cosign.key")
    if cosign_key is not None:
        password = secrets.files.get("cosign.password", b"")
        source = f"{secrets.source}: cosign.key"
        return KeySigning(load_private_key(cosign_key, source=source, password=password), source=source)
    x509_pem = secrets.get("x509.pem")
    if x509_pem is not None:
        source = f"{secrets.source}: x509.pem"
        return KeySigning(load_private_key(x509_pem, source=source), source=source)
    raise ConfigError(
        f"the x509 signer needs cosign.key (and cosign.password) or x509.pem in {secrets.source}, "
        "which holds neither"
    )


def keyless_signer(data: Mapping[str, str]) -> SigningBackend:
    """Keyless signing (:mod:`signer.signing.keyless`) from Chains' ``signers.x509.fulcio.*``,
    ``signers.x509.identity.token.file`` and ``transparency.*`` keys; the identity token is a JWT-SVID from
    ``provgate.spire.socket`` (else ``SPIFFE_ENDPOINT_SOCKET``) unless a token file is named. Nothing is
    fetched here: the Sigstore configuration is read at the first signature."""
    from signer.signing.keyless import KeylessConfig, KeylessSigning

    socket = _text(data, "provgate.spire.socket") or None
    config = KeylessConfig.from_chains(data, spiffe_socket=socket)
    try:
        config.check()
    except InputError as err:
        raise ConfigError(f"signers.x509.fulcio.enabled: {err}") from None
    return KeylessSigning(config)


def spire_signer(data: Mapping[str, str], secrets: SigningSecrets) -> SigningBackend:
    """provgate's ``spire`` signer: the operator's own X509-SVID from the Workload API, with an RFC 3161
    timestamp so the signature still verifies after the short-lived SVID expired."""
    from signer.signing.spire import SvidSigning, workload_socket

    socket = _text(data, "provgate.signers.spire.socket") or _text(data, "provgate.spire.socket") or None
    workload_socket(socket)  # refuse a missing or non-unix address now, not at the first run
    spiffe_id = _text(data, "provgate.signers.spire.spiffe-id") or None
    if spiffe_id is not None:
        parse_spiffe_id(spiffe_id, what="provgate.signers.spire.spiffe-id")
    tsa_url = _text(data, "provgate.signers.spire.tsa-url") or None
    if tsa_url is None and not _bool(data, "provgate.signers.spire.no-timestamp"):
        raise ConfigError(
            "provgate.signers.spire.tsa-url is not set: an SVID signature without a timestamp stops "
            "verifying when the SVID expires (set provgate.signers.spire.no-timestamp: true to accept that)"
        )
    return SvidSigning(socket, spiffe_id=spiffe_id, tsa_url=tsa_url)


SIGNERS: dict[str, SignerSpec] = {
    "x509": SignerSpec(
        keys=(
            "signers.x509.fulcio.enabled",
            "signers.x509.fulcio.address",
            "signers.x509.fulcio.issuer",
            "signers.x509.fulcio.provider",
            "signers.x509.identity.token.file",
            "signers.x509.tuf.mirror.url",
            "provgate.keyless.trust-config",
        ),
        factory=x509_signer,
    ),
    "spire": SignerSpec(
        keys=(
            "provgate.signers.spire.socket",
            "provgate.signers.spire.spiffe-id",
            "provgate.signers.spire.tsa-url",
            "provgate.signers.spire.no-timestamp",
        ),
        factory=spire_signer,
    ),
}
NO_SIGNER = "none"
# Chains signers provgate has no backend for; naming one is an error, not a silent skip.
UNSUPPORTED_SIGNERS = {"kms": "KMS signing"}
KMS_KEYS = tuple(
    f"signers.kms.{k}"
    for k in (
        "kmsref",
        "auth.address",
        "auth.token",
        "auth.token-path",
        "auth.oidc.path",
        "auth.oidc.role",
        "auth.oidc.token-path",
        "auth.spire.sock",
        "auth.spire.audience",
    )
)

# --------------------------------------------------------------------------------------------- storage

STORAGE_BACKENDS = ("tekton", "oci", "file")
# Chains backends provgate does not implement: naming one for an artifact is an error.
UNSUPPORTED_STORAGE = ("gcs", "docdb", "grafeas", "kafka", "archivista", "pubsub")
STORAGE_KEYS = (
    "storage.oci.repository",
    "storage.oci.repository.insecure",
    "storage.oci.encoding-format",
    "storage.gcs.bucket",
    "storage.docdb.url",
    "storage.docdb.mongo-server-url",
    "storage.docdb.mongo-server-url-dir",
    "storage.docdb.mongo-server-url-path",
    "storage.grafeas.projectid",
    "storage.grafeas.noteid",
    "storage.grafeas.notehint",
    "storage.pubsub.provider",
    "storage.pubsub.topic",
    "storage.pubsub.kafka.bootstrap.servers",
    "storage.archivista.url",
    "provgate.storage.file.path",
    "provgate.registry.ca-file",
    "provgate.storage.oci.confirm-writes",
    "provgate.registry.insecure",
)

# --------------------------------------------------------------------------------------------- keys

ARTIFACT_KEYS = (
    *(
        f"artifacts.{kind}.{k}"
        for kind in ("taskrun", "pipelinerun", "oci")
        for k in ("format", "storage", "signer")
    ),
    "artifacts.pipelinerun.enable-deep-inspection",
)
GENERAL_KEYS = (
    "builder.id",
    "builddefinition.buildtype",
    "transparency.enabled",
    "transparency.url",
    "filter.managed-by",
    "provgate.retry.delay",
    "provgate.pipelinerun.child-timeout",
)
SPIRE_KEYS = (
    "provgate.spire.enforce-nonfalsifiability",
    "provgate.spire.trust-domain",
    "provgate.spire.trust-bundle",
    "provgate.spire.socket",
    "provgate.spire.require-status-signature",
    "provgate.spire.controller-spiffe-ids",
    "provgate.spire.registration.enabled",
    "provgate.spire.registration.server-socket",
    "provgate.spire.registration.cli",
    "provgate.spire.registration.node-alias-prefix",
    "provgate.spire.registration.svid-ttl",
    "provgate.spire.registration.entry-ttl",
)


def known_keys() -> frozenset[str]:
    keys = {*ARTIFACT_KEYS, *GENERAL_KEYS, *STORAGE_KEYS, *SPIRE_KEYS, *KMS_KEYS}
    for spec in SIGNERS.values():
        keys.update(spec.keys)
    return frozenset(keys)


MAX_CONFIG_KEYS = 1000
MAX_VALUE_BYTES = 64 * 1024

# --------------------------------------------------------------------------------------------- parsing


def _artifact(
    data: Mapping[str, str], kind: str, signers: dict[str, SigningBackend], secrets: SigningSecrets
) -> ArtifactConfig | None:
    """``artifacts.<kind>.*``; None when Chains would treat it as disabled (signer none or no storage)."""
    prefix = f"artifacts.{kind}"
    fmt_key = f"{prefix}.format"
    try:
        fmt = canonical_format(_text(data, fmt_key, "in-toto"))
    except InputError as err:
        raise ConfigError(f"{fmt_key}: {err}") from None
    storage = _list(data, f"{prefix}.storage", "tekton")
    for name in storage:
        if name in UNSUPPORTED_STORAGE:
            raise ConfigError(f"{prefix}.storage: the {name} storage is not supported by provgate")
        if name not in STORAGE_BACKENDS:
            known = ", ".join(STORAGE_BACKENDS)
            raise ConfigError(f"{prefix}.storage: unknown storage backend {name!r} (known: {known})")
    signer = _text(data, f"{prefix}.signer", "x509")
    if signer in UNSUPPORTED_SIGNERS:
        raise ConfigError(
            f"{prefix}.signer: {UNSUPPORTED_SIGNERS[signer]} ({signer}) is not supported by provgate"
        )
    if signer != NO_SIGNER and signer not in SIGNERS:
        known = ", ".join([*SIGNERS, NO_SIGNER])
        raise ConfigError(f"{prefix}.signer: unknown signer {signer!r} (known: {known})")
    deep = _bool(data, f"{prefix}.enable-deep-inspection") if kind == "pipelinerun" else False
    if signer == NO_SIGNER or not storage:
        return None
    if signer not in signers:
        try:
            signers[signer] = SIGNERS[signer].factory(data, secrets)
        except ConfigError:
            raise
        except ProvgateError as err:
            raise ConfigError(f"{prefix}.signer: {signer}: {err}") from None
    return ArtifactConfig(format=fmt, storage=storage, signer=signer, deep_inspection=deep)


def _storage(data: Mapping[str, str], uses_file: bool) -> StorageConfig:
    encoding = _text(data, "storage.oci.encoding-format", "dsse")
    if encoding not in ("dsse", "sigstore-bundle"):
        raise ConfigError(f"storage.oci.encoding-format: {encoding!r} is not dsse or sigstore-bundle")
    repository = _text(data, "storage.oci.repository") or None
    insecure: tuple[str, ...] = ()
    if repository is not None:
        from attestation.reference import InvalidReference, parse

        try:
            ref = parse(repository)
        except InvalidReference as err:
            raise ConfigError(f"storage.oci.repository: {err}") from None
        if _bool(data, "storage.oci.repository.insecure"):
            insecure = (ref.registry,)
    insecure = (*insecure, *_list(data, "provgate.registry.insecure"))
    ca_file = _text(data, "provgate.registry.ca-file") or None
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ConfigError(f"provgate.registry.ca-file: {ca_file} is not a file")
    file_path = _text(data, "provgate.storage.file.path") or None
    if uses_file and file_path is None:
        raise ConfigError(
            "the file storage needs provgate.storage.file.path (a JSON-lines file to append to)"
        )
    return StorageConfig(
        oci_encoding_format=encoding,
        oci_repository=repository,
        insecure_registries=insecure,
        registry_ca=ca_file,
        oci_skip_without_subject=True,
        # Only one replica writes (the Lease) and one write per image at a time (the storage's image
        # lock): the writer's wait for concurrent provgate writers buys nothing but a second per run.
        oci_confirm_after=None if _bool(data, "provgate.storage.oci.confirm-writes") else 0.0,
        file_out=file_path,
    )


def _spire(data: Mapping[str, str], bundle: TrustBundle | None) -> SpireConfig:
    mode = _text(data, "provgate.spire.enforce-nonfalsifiability", "none")
    if mode not in MODES:
        raise ConfigError(
            f"provgate.spire.enforce-nonfalsifiability: {mode!r} is not one of {', '.join(MODES)}"
        )
    trust_domain = _text(data, "provgate.spire.trust-domain", "example.org")
    try:
        validate_trust_domain(trust_domain, what="provgate.spire.trust-domain")
    except InputError as err:
        raise ConfigError(str(err)) from None
    if mode == "none":
        return SpireConfig()
    if bundle is None:
        raise ConfigError(
            "provgate.spire.enforce-nonfalsifiability is spire but no trust bundle is configured: set "
            "provgate.spire.trust-bundle (a file) or provgate.spire.socket (the Workload API)"
        )
    ids = _list(data, "provgate.spire.controller-spiffe-ids")
    for spiffe_id in ids:
        parse_spiffe_id(spiffe_id, what="provgate.spire.controller-spiffe-ids")
    return SpireConfig(
        "spire",
        trust_domain=trust_domain,
        bundle=bundle,
        require_status_signature=_bool(data, "provgate.spire.require-status-signature"),
        controller_spiffe_ids=ids or None,
    )


def _registration(data: Mapping[str, str]) -> RegistrationConfig | None:
    if not _bool(data, "provgate.spire.registration.enabled"):
        return None
    socket = _text(data, "provgate.spire.registration.server-socket")
    if not socket:
        raise ConfigError(
            "provgate.spire.registration.enabled is true but provgate.spire.registration.server-socket "
            "(the SPIRE server's admin socket) is not set"
        )
    prefix = _text(data, "provgate.spire.registration.node-alias-prefix", DEFAULT_NODE_ALIAS_PREFIX)
    if not prefix.startswith("/"):
        raise ConfigError(f"provgate.spire.registration.node-alias-prefix: {prefix!r} must start with /")
    ttl = data.get("provgate.spire.registration.svid-ttl")
    svid_ttl = (
        int(_number(data, "provgate.spire.registration.svid-ttl", 0, minimum=1, maximum=86400))
        if ttl
        else None
    )
    entry_ttl = int(
        _number(data, "provgate.spire.registration.entry-ttl", 86400, minimum=60, maximum=30 * 86400)
    )
    return RegistrationConfig(
        server_socket=socket,
        trust_domain=_text(data, "provgate.spire.trust-domain", "example.org"),
        cli=_text(data, "provgate.spire.registration.cli") or None,
        node_alias_prefix=prefix,
        svid_ttl=svid_ttl,
        entry_ttl=entry_ttl,
    )


def _check_shape(data: Mapping[str, str]) -> None:
    if len(data) > MAX_CONFIG_KEYS:
        raise ConfigError(f"the configuration has {len(data)} keys, more than {MAX_CONFIG_KEYS}")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"{key!r}: every value must be a string (quote it in YAML)")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ConfigError(f"{key}: the value is longer than {MAX_VALUE_BYTES} bytes")


def digest_of(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()[:12]


def parse_config(
    data: Mapping[str, str],
    secrets: SigningSecrets | None = None,
    *,
    spire_bundle: TrustBundle | None = None,
) -> OperatorConfig:
    """The configuration of ``data`` (Chains' ``chains-config`` shape); :class:`ConfigError` names the
    first key that makes it unusable. ``spire_bundle``: the trust bundle the caller fetched from
    ``provgate.spire.socket`` (a ``provgate.spire.trust-bundle`` file is read here)."""
    _check_shape(data)
    secrets = secrets or SigningSecrets()
    warnings = [f"unknown configuration key {key!r} (ignored)" for key in sorted(set(data) - known_keys())]
    signers: dict[str, SigningBackend] = {}
    taskrun = _artifact(data, "taskrun", signers, secrets)
    pipelinerun = _artifact(data, "pipelinerun", signers, secrets)
    _artifact_oci_note(data, warnings)
    build_type = _text(data, "builddefinition.buildtype") or None
    if build_type is not None and build_type not in BUILD_TYPES:
        raise ConfigError(f"builddefinition.buildtype: {build_type!r} is not one of {', '.join(BUILD_TYPES)}")
    transparency = _text(data, "transparency.enabled", "false")
    if transparency not in ("false", "False", "0", "f", "F", "FALSE") and not _bool(
        data, "signers.x509.fulcio.enabled"
    ):
        raise ConfigError(
            f"transparency.enabled: {transparency!r}: provgate records keyless signatures in a transparency "
            "log (signers.x509.fulcio.enabled), not signatures made with a key"
        )
    uses_file = any(a is not None and "file" in a.storage for a in (taskrun, pipelinerun))
    storage = _storage(data, uses_file)
    bundle = spire_bundle
    bundle_file = _text(data, "provgate.spire.trust-bundle")
    if bundle_file:
        bundle = _read_bundle(bundle_file)
    spire = _spire(data, bundle)
    managed_by = frozenset(_list(data, "filter.managed-by"))

    def for_kind(artifact: ArtifactConfig | None) -> AttestConfig | None:
        if artifact is None:
            return None
        # attest() reads the artifact of the run's kind; both are this one so check() sees no other.
        config = AttestConfig(
            signers=signers,
            taskrun=artifact,
            pipelinerun=artifact,
            builder_id=_text(data, "builder.id", DEFAULT_BUILDER_ID),
            build_type=build_type,
            storage=storage,
            spire=spire,
        )
        try:
            config.check()
        except InputError as err:
            raise ConfigError(str(err)) from None
        return config

    return OperatorConfig(
        taskrun=for_kind(taskrun),
        pipelinerun=for_kind(pipelinerun),
        retry_delay=_number(data, "provgate.retry.delay", 1.0, minimum=0.1, maximum=3600),
        child_timeout=_number(
            data, "provgate.pipelinerun.child-timeout", 600.0, minimum=0, maximum=7 * 86400
        ),
        managed_by=managed_by,
        registration=_registration(data),
        warnings=tuple(warnings),
        digest=digest_of(data),
    )


def _artifact_oci_note(data: Mapping[str, str], warnings: list[str]) -> None:
    """``artifacts.oci.*`` signs the images themselves (cosign's ``.sig``); provgate attests runs only.
    Chains enables it by default, so only a ConfigMap that asks for it explicitly hears about it."""
    fmt = _text(data, "artifacts.oci.format", "simplesigning")
    if fmt != "simplesigning":
        raise ConfigError(f"artifacts.oci.format: {fmt!r} is not simplesigning (the only OCI format)")
    explicit = any(k in data for k in ("artifacts.oci.storage", "artifacts.oci.signer"))
    enabled = _text(data, "artifacts.oci.signer", "x509") != NO_SIGNER and bool(
        _list(data, "artifacts.oci.storage", "oci")
    )
    if explicit and enabled:
        warnings.append(
            "artifacts.oci.*: provgate does not sign images (cosign .sig), it attests runs; image "
            "signatures are not written"
        )


def _read_bundle(path: str) -> TrustBundle:
    try:
        with open(path, "rb") as handle:
            data = handle.read(4 * 1024 * 1024 + 1)
    except OSError as err:
        raise ConfigError(f"provgate.spire.trust-bundle: cannot read {path}: {err.strerror}") from None
    try:
        return parse_trust_bundle(data, source=path)
    except InputError as err:
        raise ConfigError(f"provgate.spire.trust-bundle: {err}") from None


def parse_data_document(text: str, *, source: str) -> dict[str, str]:
    """A config file: either the flat key/value map itself (YAML or JSON) or a whole ConfigMap object,
    whose ``data`` is taken."""
    import yaml

    if len(text.encode()) > MAX_CONFIG_KEYS * MAX_VALUE_BYTES:
        raise ConfigError(f"{source}: the file is too large")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a map of configuration keys or a ConfigMap")
    if doc.get("kind") == "ConfigMap":
        doc = doc.get("data") or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: the ConfigMap's data is not a map")
    out: dict[str, str] = {}
    for key, value in doc.items():
        if isinstance(value, bool):
            raise ConfigError(
                f'{source}: {key}: write the boolean as a string ("true"), as a ConfigMap needs'
            )
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{source}: {key}: the value must be a string")
        out[str(key)] = str(value)
    _check_shape(out)
    return out


def describe(config: OperatorConfig) -> Sequence[str]:
    """What the configuration does, one line each, for the start-up log (no secrets)."""
    lines = []
    for kind, attest in (("TaskRuns", config.taskrun), ("PipelineRuns", config.pipelinerun)):
        if attest is None:
            lines.append(f"{kind}: not attested (signer none or no storage)")
            continue
        artifact = attest.taskrun
        backend = attest.signers[artifact.signer]
        lines.append(
            f"{kind}: {artifact.format}, signed by {artifact.signer} ({backend.label}), stored in "
            f"{','.join(artifact.storage)}" + (", deep inspection" if artifact.deep_inspection else "")
        )
    spire = config.spire
    if spire.enforce_nonfalsifiability == "spire":
        lines.append(f"SPIRE-signed results are verified (trust domain {spire.trust_domain})")
    if config.registration is not None:
        lines.append(f"TaskRun SPIRE entries are registered through {config.registration.server_socket}")
    return lines
