"""What a :class:`gate.verify.Gate` is built from: trust, policies, engine, registry access and the bounds
of what a long-lived gate remembers. Nothing here imports the policy stack, so the CLI can offer its
choices without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from gate.trust_keyless import KeylessEntry

DEFAULT_TIMEOUT = 30.0
# A policy input document, read from a file (gate eval) or handed to an engine; the wasm engine's bound on
# its data and its result too.
MAX_POLICY_INPUT_BYTES = 64 * 1024 * 1024

# The policy engines (docs/rego-engines.md): "embedded", the default, runs OPA's wasm in process ("wasm" is
# its other name); "opa" is an OPA server.
ENGINES: tuple[str, ...] = ("embedded", "wasm", "opa")
# What "embedded" means: the in-process engine that meets the latency goal and decides like OPA
# (docs/rego-engines.md has the measurements).
DEFAULT_EMBEDDED = "wasm"


@dataclass(frozen=True)
class EngineOptions:
    """The policy engines' knobs."""

    # wasm instances evaluating at once: one thread per instance at a time.
    pool_size: int = 4
    # Seconds a call waits for a free wasm instance before it fails (a denial), rather than queueing
    # behind a burst of admission requests indefinitely.
    borrow_timeout: float = 10.0
    # Seconds one wasm evaluation may run (enforced inside wasmtime).
    eval_timeout: float = 10.0
    # Seconds one request to an OPA server may take.
    opa_timeout: float = 30.0


@dataclass(frozen=True)
class GateConfig:
    policy_paths: tuple[Path, ...] = ()  # empty: the bundled library, policies.ROOT
    data_paths: tuple[Path, ...] = ()
    key_files: tuple[Path, ...] = ()
    # X.509/SPIFFE trust: CA bundles, each "[TD=]FILE" (attestation.spiffe.load_bundle_args), exact SPIFFE
    # IDs allowed to sign, TSA certificates.
    trust_bundles: tuple[str | Path, ...] = ()
    spiffe_ids: tuple[str, ...] = ()
    tsa_cert_files: tuple[Path, ...] = ()
    # Keyless: trusted certificate identities and issuers under Sigstore trusted roots (gate serve's
    # trust.keyless[], gate verify's --certificate-identity ...).
    keyless: tuple[KeylessEntry, ...] = ()
    engine: str = "embedded"  # one of ENGINES
    opa_url: str | None = None
    engine_options: EngineOptions = EngineOptions()
    insecure_registries: tuple[str, ...] = ()
    ca_file: Path | None = None
    # Registry credentials: this docker config.json (a file or its directory); None: $DOCKER_CONFIG or
    # ~/.docker, as docker finds them.
    docker_config: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    # Attestations that verified are remembered up to this many bytes of them (0: verify every time).
    verified_memo_bytes: int = 32 * 1024 * 1024
    # Registry content fetched by digest is remembered up to this many bytes (0: ask every time), and
    # "this image exists" / "this registry has no referrers API" for registry_cache_ttl seconds; the
    # .att tag and the referrers are asked on every verification (attestation.oci.cache).
    registry_cache_bytes: int = 32 * 1024 * 1024
    registry_cache_ttl: float = 60.0
    # The registry client's HTTP library (attestation.oci.transport.TRANSPORTS): httpx for a command,
    # aiohttp for gate serve.
    registry_transport: str = "httpx"
    # Policy results remembered by what the input was made from, up to this many bytes (estimated:
    # gate.memo.evaluation_cost; 0: evaluate every time); only for an engine whose result cannot depend
    # on anything else (see EvaluationMemo).
    evaluation_memo_bytes: int = 16 * 1024 * 1024
