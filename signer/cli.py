"""The ``signer`` command line: provenance for Tekton runs, signing, key generation.

A thin shell: ``sign`` is :func:`signer.attest.attest` with its configuration taken from flags. Every
failure is one line on stderr and exit code 2 (DESIGN §3), a temporary one saying so; hint warnings go to
stderr prefixed ``warning:`` and leave the exit code alone; ``-v`` adds the debug log.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click

from attestation.errors import InputError, PasswordRequired, ProvgateError, ResultsNotVerified, TransientError
from signer.documents import load_documents
from signer.provenance import (
    BUILD_TYPES,
    DEFAULT_BUILDER_ID,
    FORMAT_ALIASES,
    FORMATS,
    Options,
    Provenance,
    canonical_format,
    check_build_type,
    generate,
)
from signer.run import Run, child_taskruns, require_completed, to_run

if TYPE_CHECKING:
    from signer.signing import SigningBackend
    from signer.spire.nonfalsifiability import SpireConfig
    from signer.storage import StorageConfig

EXIT_INPUT = 2


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RunInput:
    run: Run
    children: list[Run]


def load_run_input(run_path: str, taskrun_paths: Sequence[str]) -> RunInput:
    """The run to attest and, for a PipelineRun, its child TaskRuns.

    RUN may be a List holding the PipelineRun and its children; ``--taskrun`` files add more children.
    """
    runs = [to_run(d, source=run_path) for d in load_documents(run_path)]
    extra = [to_run(d, source=p) for p in taskrun_paths for d in load_documents(p)]
    pipelineruns = [r for r in runs if r.kind == "PipelineRun"]
    if len(pipelineruns) > 1:
        raise InputError(f"{run_path}: holds {len(pipelineruns)} PipelineRuns; give one per file")
    if pipelineruns:
        main = pipelineruns[0]
        require_completed(main)
        candidates = [r for r in runs if r.kind == "TaskRun"] + extra
        return RunInput(main, child_taskruns(main, candidates))
    if len(runs) > 1:
        raise InputError(
            f"{run_path}: holds {len(runs)} TaskRuns and no PipelineRun; give one TaskRun per file"
        )
    if extra:
        raise InputError(f"--taskrun only applies to a PipelineRun; {run_path} holds a TaskRun")
    require_completed(runs[0])
    return RunInput(runs[0], [])


def build_provenance(run_path: str, taskrun_paths: Sequence[str], options: Options) -> Provenance:
    inp = load_run_input(run_path, taskrun_paths)
    provenance = generate(inp.run, inp.children, options)
    for line in provenance.warnings:
        click.echo(f"warning: {line}", err=True)
    return provenance


# --------------------------------------------------------------------------------------------- options

FORMAT_CHOICES = (*FORMATS, *FORMAT_ALIASES)


def _check_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return canonical_format(value)
    except InputError as err:
        raise click.BadParameter(str(err)) from None


def _check_build_type(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        check_build_type(value)
    except InputError as err:
        raise click.BadParameter(str(err)) from None
    return value


def provenance_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """RUN and the options shared by every command that builds a statement."""
    decorators = [
        click.argument("run", metavar="RUN", type=click.Path(dir_okay=False)),
        click.option(
            "--taskrun",
            "taskruns",
            multiple=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="A file with child TaskRuns of the PipelineRun (repeatable; YAML/JSON, a List "
            "is fine). Not needed when RUN is a List that already holds them.",
        ),
        click.option(
            "--format",
            "fmt",
            default="slsa/v1",
            show_default=True,
            callback=_check_format,
            metavar="|".join(FORMAT_CHOICES),
            help="Provenance format, as Tekton Chains names them ('in-toto' = 'slsa/v1', SLSA v0.2 "
            "predicate; 'slsa/v2alpha3' and 'slsa/v2alpha4' are SLSA v1.0).",
        ),
        click.option(
            "--deep-inspection",
            is_flag=True,
            help="PipelineRuns: also take subjects and materials from the child TaskRuns' results, "
            "not only from the pipeline results (Chains' enable-deep-inspection).",
        ),
        click.option(
            "--builder-id",
            default=DEFAULT_BUILDER_ID,
            show_default=True,
            metavar="ID",
            help="builder.id recorded in the predicate.",
        ),
        click.option(
            "--build-type",
            default=None,
            callback=_check_build_type,
            metavar="URI",
            help=f"SLSA v1.0 buildType for the slsa/v2alpha* formats: {' or '.join(BUILD_TYPES)} "
            "(default the first).",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _options(fmt: str, deep_inspection: bool, builder_id: str, build_type: str | None) -> Options:
    return Options(format=fmt, builder_id=builder_id, build_type=build_type, deep_inspection=deep_inspection)


def _pretty(data: bytes) -> str:
    # Keep the serialised key order (Chains' proto order), just indent it for people.
    return json.dumps(json.loads(data), indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also print what happens on stderr: the backends chosen, what was stored where, registry "
    "retries (the debug log).",
)
def cli(verbose: bool = False) -> None:
    """Build, sign and store provenance for Tekton TaskRuns and PipelineRuns.

    \b
    Examples:
      signer provenance pipelinerun.yaml --taskrun taskruns.yaml
      signer sign taskrun.json --key cosign.key --out provenance.dsse.json
      signer generate-key-pair --output-key-prefix cosign
    """
    _log_to_stderr(logging.DEBUG if verbose else logging.WARNING)


class _StderrLines(logging.Handler):
    """The log of the signer and its libraries as CLI lines: ``warning: ...``; ``debug: <module>: ...``.

    Writes to the ``sys.stderr`` of the moment, so one handler serves every in-process run."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "warning" if record.levelno >= logging.WARNING else f"debug: {record.name}"
            click.echo(f"{prefix}: {record.getMessage()}", err=True)
        except Exception:
            self.handleError(record)


_STDERR = _StderrLines()


def _log_to_stderr(level: int) -> None:
    for name in ("signer", "attestation"):
        logger = logging.getLogger(name)
        if _STDERR not in logger.handlers:
            logger.addHandler(_STDERR)
        logger.setLevel(level)


@cli.command("provenance")
@provenance_options
@click.option(
    "--output",
    type=click.Choice(["json"]),
    default="json",
    show_default=True,
    help="Output format of the statement.",
)
def provenance_cmd(
    run: str,
    taskruns: tuple[str, ...],
    fmt: str,
    deep_inspection: bool,
    builder_id: str,
    build_type: str | None,
    output: str,
) -> None:
    """Print the unsigned in-toto statement for a completed run.

    RUN is a YAML or JSON file with a TaskRun or PipelineRun (tekton.dev/v1, or v1beta1 which is
    converted first), a single object or a List. A PipelineRun needs its child TaskRuns: put them in
    the same List or pass --taskrun.

    \b
    Examples:
      signer provenance taskrun.yaml
      signer provenance pipelinerun.yaml --taskrun children.yaml --deep-inspection
      signer provenance run.yaml --format slsa/v2alpha4 --builder-id https://ci.example.com/tekton
    """
    from attestation import intoto

    prov = build_provenance(run, taskruns, _options(fmt, deep_inspection, builder_id, build_type))
    click.echo(_pretty(intoto.serialize(prov.statement)))


@cli.command("sign")
@provenance_options
@click.option(
    "--key",
    "key",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Private key: a cosign encrypted key (cosign.key) or an unencrypted PEM key.",
)
@click.option(
    "--spiffe-socket",
    metavar="URI",
    help="Sign with this workload's SPIRE X509-SVID from the Workload API at URI "
    "(unix:///path/api.sock); prints a Sigstore bundle with the certificate chain.",
)
@click.option(
    "--spiffe-id", metavar="ID", help="With --spiffe-socket: which of the issued SVIDs (or JWT-SVIDs) to use."
)
@click.option(
    "--keyless",
    is_flag=True,
    help="Sign with a short-lived Fulcio certificate for this workload's identity token (a JWT-SVID from "
    "--spiffe-socket / SPIFFE_ENDPOINT_SOCKET, or --identity-token-file) and record the signature in "
    "a transparency log; stores a Sigstore bundle.",
)
@click.option(
    "--trust-config",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="With --keyless: the Sigstore instance to use, a ClientTrustConfig JSON file (trusted root + "
    "signing config). Default: the public-good instance.",
)
@click.option(
    "--identity-token-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="With --keyless: read the identity token (a JWT) from FILE instead of the Workload API.",
)
@click.option("--fulcio-url", metavar="URL", help="With --keyless: use this Fulcio instead of the config's.")
@click.option("--rekor-url", metavar="URL", help="With --keyless: use this transparency log instead.")
@click.option(
    "--oidc-issuer", metavar="URL", help="With --keyless: refuse an identity token from another issuer."
)
@click.option(
    "--tsa-url",
    metavar="URL",
    help="With --spiffe-socket: RFC 3161 timestamp authority to timestamp the signature at.",
)
@click.option(
    "--key-password-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="File with the key's password (one trailing newline is ignored). Otherwise "
    "COSIGN_PASSWORD is used, or you are asked when a terminal is attached.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Write the signed attestation to FILE (default: stdout when no --storage is given).",
)
@click.option(
    "--storage",
    default="",
    metavar="LIST",
    help="Where to store it, comma-separated: oci (next to every image subject in its registry), "
    "tekton (the run annotations Chains writes, to --annotations-out), file (append a JSON "
    "line to --file-out).",
)
@click.option(
    "--oci-encoding-format",
    type=click.Choice(["dsse", "sigstore-bundle"]),
    default="dsse",
    show_default=True,
    help="oci storage: dsse = a layer of cosign's sha256-<hex>.att tag; sigstore-bundle = a "
    "Sigstore bundle as an OCI 1.1 referrer (Chains' storage.oci.encoding-format).",
)
@click.option(
    "--oci-repository",
    metavar="REPO",
    help="oci storage, dsse: put the .att tags in REPO instead of the image's repository.",
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST",
    help="Registry to reach over plain HTTP (repeatable). Loopback registries need no flag.",
)
@click.option(
    "--registry-ca",
    type=click.Path(dir_okay=False, exists=True),
    metavar="FILE",
    help="CA certificates (PEM) to trust for registry TLS.",
)
@click.option(
    "--annotations-out",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="tekton storage: write the annotation map (JSON) here for the operator to apply.",
)
@click.option(
    "--file-out",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="file storage: append one JSON line (envelope, or bundle for SVID signatures) here.",
)
@click.option(
    "--enforce-nonfalsifiability",
    type=click.Choice(["none", "spire"]),
    default="none",
    show_default=True,
    help="Tekton's switch: with 'spire', a run (or any child TaskRun of a PipelineRun) whose "
    "SPIRE-signed results do not verify gets no provenance: nothing is signed or stored, "
    "the reasons go to stderr and the exit code is 1.",
)
@click.option(
    "--spire-trust-bundle",
    "spire_trust_bundles",
    multiple=True,
    metavar="[TD=]FILE",
    help="With --enforce-nonfalsifiability spire: a SPIRE trust bundle (PEM, SPIFFE or SPIRE JSON), "
    "for --spire-trust-domain unless TD= or the file names another (repeatable).",
)
@click.option(
    "--spire-trust-domain",
    metavar="TD",
    help="With --enforce-nonfalsifiability spire: the trust domain of the TaskRun SVIDs.",
)
def sign_cmd(
    run: str,
    taskruns: tuple[str, ...],
    fmt: str,
    deep_inspection: bool,
    builder_id: str,
    build_type: str | None,
    key: str | None,
    key_password_file: str | None,
    out: str | None,
    spiffe_socket: str | None = None,
    spiffe_id: str | None = None,
    tsa_url: str | None = None,
    storage: str = "",
    oci_encoding_format: str = "dsse",
    oci_repository: str | None = None,
    insecure_registries: tuple[str, ...] = (),
    registry_ca: str | None = None,
    annotations_out: str | None = None,
    file_out: str | None = None,
    enforce_nonfalsifiability: str = "none",
    spire_trust_bundles: tuple[str, ...] = (),
    spire_trust_domain: str | None = None,
    keyless: bool = False,
    trust_config: str | None = None,
    identity_token_file: str | None = None,
    fulcio_url: str | None = None,
    rekor_url: str | None = None,
    oidc_issuer: str | None = None,
) -> None:
    """Build the provenance of a completed run, sign it, and store it.

    With --key the result is a DSSE envelope (payloadType application/vnd.in-toto+json), what Tekton
    Chains stores and what 'cosign verify-attestation' and 'gate verify' check. With --spiffe-socket it
    is signed with the workload's SPIRE X509-SVID and carries the certificate chain (and an RFC 3161
    timestamp with --tsa-url), printed as a Sigstore bundle. With --keyless it is signed with a Fulcio
    certificate for the workload's identity token and recorded in a transparency log: a Sigstore bundle,
    stored by the oci storage as an OCI 1.1 referrer.

    \b
    Examples:
      COSIGN_PASSWORD=... signer sign taskrun.yaml --key cosign.key
      signer sign pipelinerun.yaml --taskrun children.yaml --key cosign.key \\
          --key-password-file pw.txt --out provenance.dsse.json
      signer sign pipelinerun.yaml --key cosign.key --storage oci          # push next to the image
      signer sign run.yaml --key cosign.key --storage oci,tekton,file \\
          --oci-encoding-format sigstore-bundle --annotations-out notes.json --file-out att.jsonl
      signer sign taskrun.yaml --key cosign.key --enforce-nonfalsifiability spire \\
          --spire-trust-bundle bundle.pem --spire-trust-domain example.org
      signer sign taskrun.yaml --keyless --spiffe-socket unix:///run/spire/agent.sock \\
          --trust-config private-sigstore.json --storage oci,tekton --annotations-out notes.json
    """
    from signer.attest import ArtifactConfig, AttestConfig, attest

    keyless_flags = trust_config or identity_token_file or fulcio_url or rekor_url or oidc_issuer
    if keyless:
        if key is not None:
            raise click.UsageError("give exactly one of --key FILE or --spiffe-socket URI, or --keyless")
        if tsa_url:
            raise click.UsageError(
                "--tsa-url goes with --spiffe-socket; --keyless takes its TSA from --trust-config"
            )
        if identity_token_file and (spiffe_socket or spiffe_id):
            raise click.UsageError("give --identity-token-file or --spiffe-socket with --keyless, not both")
    else:
        if keyless_flags:
            raise click.UsageError(
                "--trust-config, --identity-token-file, --fulcio-url, --rekor-url and --oidc-issuer "
                "go with --keyless"
            )
        if (key is None) == (spiffe_socket is None):
            raise click.UsageError("give exactly one of --key FILE or --spiffe-socket URI, or --keyless")
        if spiffe_socket is None and (tsa_url or spiffe_id):
            raise click.UsageError("--tsa-url and --spiffe-id go with --spiffe-socket")
    backends, storage_config = _storage(
        storage,
        oci_encoding_format,
        oci_repository,
        insecure_registries,
        registry_ca,
        annotations_out=annotations_out,
        file_out=file_out,
    )
    spire_config = _spire_config(enforce_nonfalsifiability, spire_trust_bundles, spire_trust_domain)
    signing: SigningBackend
    if keyless:
        from signer.signing.keyless import KeylessConfig, KeylessSigning

        keyless_config = KeylessConfig(
            trust_config=trust_config,
            fulcio_url=fulcio_url,
            rekor_url=rekor_url,
            issuer=oidc_issuer,
            token_file=identity_token_file,
            spiffe_socket=spiffe_socket,
            spiffe_id=spiffe_id,
        )
        keyless_config.check()
        name, signing = "keyless", KeylessSigning(keyless_config)
    else:
        name, signing = _signing(key, key_password_file, spiffe_socket, spiffe_id, tsa_url)
    artifact = ArtifactConfig(format=fmt, storage=backends, signer=name, deep_inspection=deep_inspection)
    config = AttestConfig(
        signers={name: signing},
        taskrun=artifact,
        pipelinerun=artifact,
        builder_id=builder_id,
        build_type=build_type,
        storage=storage_config,
        spire=spire_config,
    )
    inp = load_run_input(run, taskruns)
    try:
        outcome = attest(inp.run, inp.children, config)
    except ResultsNotVerified as err:
        for reason in err.reasons:
            click.echo(f"not verified: {reason}", err=True)
        if "tekton" in backends and annotations_out:
            click.echo(f"marked failed: annotations written to {annotations_out}", err=True)
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    if out is not None or not backends:
        _write_output(outcome.signed.portable(), out)
    for where in outcome.stored:
        click.echo(f"stored in {where}", err=True)
    if outcome.signed.transparency:
        click.echo(f"transparency log entry: {outcome.signed.transparency}", err=True)


def _storage(
    storage: str,
    oci_encoding_format: str,
    oci_repository: str | None,
    insecure_registries: Sequence[str],
    registry_ca: str | None,
    *,
    annotations_out: str | None,
    file_out: str | None,
) -> tuple[tuple[str, ...], StorageConfig]:
    """The --storage backends and their settings; refused before any key is asked for its password."""
    from signer.storage import StorageConfig, parse_backends

    backends = parse_backends(storage)
    if "tekton" in backends and not annotations_out:
        raise InputError("--storage tekton needs --annotations-out FILE (the annotation map to apply)")
    if "file" in backends and not file_out:
        raise InputError("--storage file needs --file-out FILE (JSON lines, one attestation per line)")
    config = StorageConfig(
        oci_encoding_format=oci_encoding_format,
        oci_repository=oci_repository,
        insecure_registries=insecure_registries,
        registry_ca=registry_ca,
        annotations_out=annotations_out,
        file_out=file_out,
    )
    config.check(backends)
    return backends, config


def _signing(
    key: str | None,
    key_password_file: str | None,
    spiffe_socket: str | None,
    spiffe_id: str | None,
    tsa_url: str | None,
) -> tuple[str, SigningBackend]:
    """The signing backend the flags name, and its name in the configuration."""
    if spiffe_socket is not None:
        from signer.signing.spire import SvidSigning

        # The SVID itself is fetched by attest(), right before the run is built: SVIDs rotate.
        return "spire", SvidSigning(spiffe_socket, spiffe_id=spiffe_id, tsa_url=tsa_url)
    from signer.signing.key import KeySigning

    # The key is loaded now: a wrong password should not cost reading the run.
    return "key", KeySigning.load(key or "", password_file=key_password_file)


def _spire_config(mode: str, bundle_files: Sequence[str], trust_domain: str | None) -> SpireConfig:
    from signer.spire.nonfalsifiability import SpireConfig

    if mode == "none":
        if bundle_files or trust_domain:
            raise click.UsageError(
                "--spire-trust-bundle/--spire-trust-domain go with --enforce-nonfalsifiability spire"
            )
        return SpireConfig()
    if not bundle_files or not trust_domain:
        raise click.UsageError(
            "--enforce-nonfalsifiability spire needs --spire-trust-bundle and --spire-trust-domain"
        )
    from attestation.spiffe import load_bundle_args, validate_trust_domain

    validate_trust_domain(trust_domain, what="--spire-trust-domain")
    bundles = load_bundle_args(bundle_files, default_trust_domain=trust_domain)
    return SpireConfig("spire", trust_domain=trust_domain, bundle=bundles)


def _write_output(data: bytes, out: str | None) -> None:
    if out is None:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    from attestation.files import write_atomic

    write_atomic(out, data + b"\n")


@cli.command("verify-results")
@click.argument("run", type=click.Path(dir_okay=False))
@click.option(
    "--trust-bundle",
    "trust_bundles",
    multiple=True,
    metavar="[TD=]FILE",
    help="SPIRE trust bundle: PEM or SPIFFE JSON (spire-server bundle show), for --trust-domain unless "
    "given as TD=FILE; or SPIRE's JSON or bundle list output, which names its trust domains (repeatable). "
    "An SVID is checked only against its own trust domain's bundle.",
)
@click.option(
    "--spiffe-socket",
    metavar="URI",
    help="Take the trust bundles from the Workload API at URI (its own and the federated ones).",
)
@click.option("--trust-domain", required=True, metavar="TD", help="SPIRE trust domain, e.g. example.org.")
@click.option(
    "--require-status-signature",
    is_flag=True,
    help="Also require the Tekton controller's signature over the status "
    "(status.annotations tekton.dev/status-hash, -sig, controller-svid).",
)
@click.option(
    "--controller-spiffe-id",
    "controller_spiffe_ids",
    multiple=True,
    metavar="ID",
    help="With --require-status-signature: the controller SVID must have this SPIFFE ID "
    "(repeatable; default: any SVID of the trust bundle).",
)
@click.pass_context
def verify_results_cmd(
    ctx: click.Context,
    run: str,
    trust_bundles: tuple[str, ...],
    spiffe_socket: str | None,
    trust_domain: str,
    require_status_signature: bool = False,
    controller_spiffe_ids: tuple[str, ...] = (),
) -> None:
    """Check the SPIRE-signed results of a TaskRun (TEP-0089).

    Exit 0: verified. Exit 1: not verified, one line per reason on stdout. Exit 2: unusable input.

    \b
    Examples:
      signer verify-results taskrun.yaml --trust-bundle bundle.pem --trust-domain example.org
      signer verify-results taskrun.yaml --trust-bundle bundle.pem --trust-domain example.org \\
        --require-status-signature --controller-spiffe-id spiffe://example.org/tekton/controller
    """
    from attestation.spiffe import load_bundle_args, validate_trust_domain
    from signer.documents import load_documents
    from signer.run import runs_from_documents
    from signer.spire.results import verify_run_results
    from signer.spire.trust import bundles_from_workload_api

    if bool(trust_bundles) == (spiffe_socket is not None):
        raise click.UsageError("give --trust-bundle FILE or --spiffe-socket URI, not both")
    if controller_spiffe_ids and not require_status_signature:
        raise click.UsageError("--controller-spiffe-id goes with --require-status-signature")
    validate_trust_domain(trust_domain, what="--trust-domain")
    if trust_bundles:
        bundle = load_bundle_args(trust_bundles, default_trust_domain=trust_domain)
    else:
        bundle = bundles_from_workload_api(spiffe_socket, trust_domain, federated=True)
    runs = runs_from_documents(load_documents(run), source=run)
    if len(runs) != 1:
        raise InputError(f"{run}: expected one TaskRun, found {len(runs)} runs")
    verdict = verify_run_results(
        runs[0],
        trust_domain=trust_domain,
        bundle=bundle,
        require_status_signature=require_status_signature,
        controller_spiffe_ids=controller_spiffe_ids or None,
    )
    if verdict.verified:
        status_note = "; status signed by the controller" if require_status_signature else ""
        click.echo(
            f"verified: {len(verdict.verified_results)} results signed by {verdict.spiffe_id}{status_note}"
        )
        return
    for reason in verdict.reasons:
        click.echo(f"not verified: {reason}")
    sys.exit(1)  # main() ignores click return codes; exit 1 means "not verified"


@cli.command("generate-key-pair")
@click.option(
    "--output-key-prefix",
    default="cosign",
    show_default=True,
    metavar="P",
    help="Write P.key (encrypted, mode 0600) and P.pub. Existing files are never overwritten.",
)
def generate_key_pair_cmd(output_key_prefix: str) -> None:
    """Generate a cosign-compatible ECDSA P-256 key pair.

    The password comes from COSIGN_PASSWORD when it is set (an empty value means no password, as in
    cosign); otherwise you are asked twice on the terminal.

    \b
    Examples:
      signer generate-key-pair
      COSIGN_PASSWORD=secret signer generate-key-pair --output-key-prefix ci/signing
    """
    from attestation.keys import write_key_pair

    password = _new_password()
    key_path, pub_path = write_key_pair(output_key_prefix, password)
    click.echo(f"Private key written to {key_path}", err=True)
    click.echo(f"Public key written to {pub_path}", err=True)


def _new_password() -> bytes:
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode("utf-8")
    if not sys.stdin.isatty():
        raise InputError("no password: set COSIGN_PASSWORD (no terminal to ask on)")
    first = click.prompt("Enter password for private key", hide_input=True, default="", show_default=False)
    second = click.prompt(
        "Enter password for private key again", hide_input=True, default="", show_default=False
    )
    if first != second:
        raise InputError("passwords do not match")
    return first.encode("utf-8")


@cli.command("run")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The configuration: Chains' chains-config keys (a YAML/JSON map, or a whole ConfigMap), read "
    "again every --config-poll seconds.",
)
@click.option(
    "--configmap",
    metavar="NAMESPACE/NAME",
    help="Read the configuration from this ConfigMap instead (e.g. tekton-chains/chains-config).",
)
@click.option(
    "--namespace",
    metavar="NS",
    help="The operator's namespace: its signing-secrets Secret and Lease (default: POD_NAMESPACE, the "
    "in-cluster ServiceAccount's, else tekton-chains).",
)
@click.option(
    "--watch-namespace",
    "watch_namespaces",
    multiple=True,
    metavar="NS",
    help="Attest runs in this namespace only (repeatable; default: all namespaces).",
)
@click.option("--workers", default=8, show_default=True, help="Runs attested at the same time.")
@click.option(
    "--kube-api-qps", default=50.0, show_default=True, help="API calls per second of the operator's client."
)
@click.option("--kube-api-burst", default=100, show_default=True, help="API calls at once above the QPS.")
@click.option(
    "--http-address",
    default="0.0.0.0:9090",
    show_default=True,
    metavar="HOST:PORT",
    help="Where /metrics, /healthz and /readyz are served.",
)
@click.option(
    "--leader-election/--no-leader-election",
    default=True,
    show_default=True,
    help="Take the Lease before attesting, so that of several replicas one works at a time.",
)
@click.option("--lease-name", default="provgate-signer", show_default=True, metavar="NAME")
@click.option(
    "--lease-duration",
    default=15.0,
    show_default=True,
    help="Seconds without renewal after which a standby replica takes the Lease over.",
)
@click.option(
    "--signing-secret",
    default="signing-secrets",
    show_default=True,
    metavar="NAME",
    help="Secret in the operator's namespace with cosign.key/cosign.password or x509.pem, as Chains.",
)
@click.option(
    "--signing-secrets-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Read the signing secrets from this directory (the Secret mounted) instead of the API.",
)
@click.option(
    "--config-poll", default=5.0, show_default=True, help="Seconds between reads of the configuration."
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def run_cmd(
    config_file: str | None,
    configmap: str | None,
    namespace: str | None,
    watch_namespaces: tuple[str, ...],
    workers: int,
    kube_api_qps: float,
    kube_api_burst: int,
    http_address: str,
    leader_election: bool,
    lease_name: str,
    lease_duration: float,
    signing_secret: str,
    signing_secrets_dir: str | None,
    config_poll: float,
    log_format: str,
) -> None:
    """Run the operator: attest every completed TaskRun and PipelineRun, exactly once.

    Configured in Tekton Chains' own keys (artifacts.taskrun.format, artifacts.pipelinerun.storage,
    storage.oci.repository, builder.id, ...) plus provgate's under provgate.*; runs are marked with
    Chains' annotations (chains.tekton.dev/signed). Out of a cluster it uses KUBECONFIG like kubectl.

    \b
    Examples:
      signer run --configmap tekton-chains/chains-config
      signer run --config chains-config.yaml --namespace tekton-chains --no-leader-election
    """
    from signer.operator.main import Options, run

    verbose = logging.getLogger("signer").level == logging.DEBUG
    code = run(
        Options(
            config_file=config_file,
            configmap=configmap,
            namespace=namespace,
            watch_namespaces=watch_namespaces,
            workers=workers,
            kube_api_qps=kube_api_qps,
            kube_api_burst=kube_api_burst,
            http_address=http_address,
            leader_election=leader_election,
            lease_name=lease_name,
            lease_duration=lease_duration,
            lease_renew=min(2.0, lease_duration / 4),
            signing_secret=signing_secret,
            signing_secrets_dir=signing_secrets_dir,
            config_poll=config_poll,
            log_format=log_format,
            verbose=verbose,
        )
    )
    sys.exit(code)


# --------------------------------------------------------------------------------------------- entry point


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(EXIT_INPUT)


def _with_hint(err: ProvgateError) -> str:
    """The error's line, and the option that fixes it where the library could not name one."""
    if isinstance(err, PasswordRequired):
        return f"{err}, or pass --key-password-file FILE"
    return str(err)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every failure is one stderr line and exit code 2, never a traceback."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="signer", standalone_mode=False)
    except TransientError as err:
        _fail(f"{err} (temporary: try again later)")
    except ProvgateError as err:
        _fail(_with_hint(err))
    except click.exceptions.Abort:
        _fail("aborted")
    except click.ClickException as err:
        # Usage errors: click's message already names the option; keep it to one line.
        _fail(err.format_message())
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted")
    except BrokenPipeError:
        sys.exit(EXIT_INPUT)
    except Exception as err:  # the contract: one line and exit 2, never a traceback
        _fail(f"internal error: {type(err).__name__}: {err}")
    sys.exit(0)


if __name__ == "__main__":
    main()
