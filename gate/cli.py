"""``gate``: verify an image's provenance against policy, evaluate and test policies (DESIGN.md §3).

Exit codes: 0 allowed / passed, 1 denied / failed, 2 could not decide or unusable input (one line on
stderr naming what and where; never a traceback). Heavy modules (crypto, policy engines, HTTP) are
imported inside the commands so ``--help`` and argument errors stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import click

from gate.config import ENGINES, MAX_POLICY_INPUT_BYTES

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

    from gate.decision import Decision
    from gate.trust_keyless import KeylessEntry

EXIT_UNDECIDED = 2
ENGINE_HELP = "Policy engine: embedded (the default, in process), wasm (the same), or opa (needs --opa-url)."


def _fail(message: str) -> None:
    from gate.render import printable

    click.echo(f"gate: error: {printable(' '.join(message.split()))}", err=True)


def _paths(values: Sequence[str]) -> tuple[Path, ...]:
    # pathlib (and the urllib.parse and ipaddress it imports) is left to the commands: --help and argument
    # errors never need it.
    from pathlib import Path

    return tuple(Path(v) for v in values)


def _emit_json(doc: Any) -> None:
    from gate.render import to_json

    click.echo(to_json(doc, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Say on stderr what the gate does: keys tried, caches that answered, registry retries.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """provgate's deploy-time gate: admit an image only with trusted, policy-conformant provenance.

    \b
    Exit codes: 0 allowed/passed, 1 denied/failed, 2 could not decide or bad input
    (treat 2 as denied).
    """
    if verbose:
        ctx.call_on_close(_show_debug_log())


# The packages whose modules log what they do (logging.getLogger(__name__)), at DEBUG only.
LOGGED_PACKAGES = ("gate", "attestation")


def _show_debug_log() -> Any:
    """Send the packages' DEBUG messages to stderr, one printable line each; returns the undo."""
    import logging

    from gate.render import printable

    class Printable(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Printable("gate: debug: %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in LOGGED_PACKAGES]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)

    def undo() -> None:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)

    return undo


VERIFY_HELP = """Verify IMAGE's signed provenance and evaluate the policy over it.

\b
Every attestation of the image is checked in this order: signature over the
stored bytes (DSSE PAE) by a --key, a SPIFFE signer or a keyless identity
(certificate, log entry and timestamp checked offline against --trusted-root),
then the in-toto statement, then a subject
whose digest is the image's. Only attestations that pass reach the policy.
An image with no such attestation, or a policy that evaluates no rule, is denied.
A tag is resolved to its digest in the registry and only the digest is evaluated.

\b
Exit 0 allowed, 1 denied, 2 could not decide (treat as denied), whatever the
--output: policy-input prints the policy's input and still exits with the verdict.

\b
Examples:
  # from the registry, with the bundled policy library
  gate verify registry.example/app:v1 --key cosign.pub
\b
  # offline: attestations from a file (one DSSE envelope or Sigstore bundle
  # JSON per line); IMAGE must then carry a digest
  gate verify registry.example/app@sha256:3f... --key cosign.pub \\
      --attestations app.att.jsonl --output json
\b
  # keyless: Fulcio certificate for a SPIFFE ID, verified offline against a
  # private Sigstore's trusted root
  gate verify registry.example/app:v1 \\
      --certificate-identity spiffe://example.org/ns/tekton-chains/sa/signer \\
      --certificate-oidc-issuer https://oidc.example.org --trusted-root trusted_root.json
\b
  # SVID signers of two trust domains, each checked against its own CAs
  gate verify registry.example/app:v1 --tsa-certs tsa.pem \\
      --trust-bundle example.org=example.pem --spiffe-id spiffe://example.org/ns/ci/sa/signer \\
      --trust-bundle partner.org=partner.pem --spiffe-id spiffe://partner.org/ns/ci/sa/signer
\b
  # your own policies and rule data; print what the policy sees
  gate verify localhost:5000/app:dev --key k.pub --policy ./policy \\
      --data ./data --output policy-input > input.json
\b
  # a release: many images at once, concurrently, one decision each;
  # FILE is a JSON/YAML list of images or a Conforma ApplicationSnapshot
  # (components[].containerImage). The exit code is the worst of them.
  gate verify reg/a:v1 reg/b:v2 --key k.pub
  gate verify --images snapshot.yaml --key k.pub --output json
"""


@cli.command("verify", help=VERIFY_HELP)
@click.argument("image", nargs=-1)
@click.option(
    "--images",
    "images_file",
    metavar="FILE",
    help="More images: a JSON or YAML list, or an ApplicationSnapshot (components[].containerImage).",
)
@click.option(
    "--policy",
    "policy",
    multiple=True,
    metavar="PATH",
    help="Rego policy file or directory (repeatable; default: the bundled library).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="PATH",
    help="Rule data file, JSON or YAML, or a directory of them (all *.json/*.yaml/*.yml, sorted; "
    "later files win; repeatable).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="FILE",
    help="Trusted public key, PEM (repeatable); e.g. cosign.pub.",
)
@click.option(
    "--attestations",
    "attestations",
    metavar="FILE",
    help="Read attestations from FILE instead of the registry.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="embedded",
    show_default=True,
    help=ENGINE_HELP,
)
@click.option("--opa-url", metavar="URL", help="OPA server for --engine opa.")
@click.option(
    "--output",
    "output",
    type=click.Choice(["text", "json", "policy-input"]),
    default="text",
    show_default=True,
    help="text: for people; json: the decision document; policy-input: the document the policy sees "
    "(for gate eval), with the verdict on stderr. The exit code is the verdict's for every output.",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST",
    help="Registry to reach over plain HTTP (repeatable).",
)
@click.option("--ca-file", metavar="FILE", help="CA certificates (PEM) to trust for registry TLS.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up (exit 2) after this long.",
)
@click.option(
    "--trust-bundle",
    "trust_bundles",
    multiple=True,
    metavar="[TD=]FILE",
    help="CA certificates of X.509/SPIFFE signers, for trust domain TD: PEM or SPIFFE bundle JSON "
    "(TD= may be left out when the --spiffe-id values name one trust domain), or SPIRE's JSON or "
    "bundle list output, which names its trust domains. A signer's certificate is checked only "
    "against its own trust domain's CAs (repeatable; keep old CAs).",
)
@click.option(
    "--spiffe-id",
    "spiffe_ids",
    multiple=True,
    metavar="ID",
    help="SPIFFE ID allowed to sign, exact match (repeatable; needed with --trust-bundle).",
)
@click.option(
    "--tsa-certs",
    "tsa_certs",
    multiple=True,
    metavar="FILE",
    help="Trusted RFC 3161 timestamp authority certificates, PEM (repeatable).",
)
@click.option(
    "--certificate-identity",
    "certificate_identities",
    multiple=True,
    metavar="ID",
    help="Keyless: a signer identity to trust, exact (the certificate's SAN, e.g. a SPIFFE ID; repeatable).",
)
@click.option(
    "--certificate-identity-regexp",
    "certificate_identity_regexps",
    multiple=True,
    metavar="RE",
    help="Keyless: trusted identities as a regular expression matching the whole SAN (repeatable).",
)
@click.option(
    "--certificate-oidc-issuer",
    metavar="URL",
    help="Keyless: the OIDC issuer the certificate must name, exact.",
)
@click.option(
    "--certificate-oidc-issuer-regexp",
    metavar="RE",
    help="Keyless: the OIDC issuer as a regular expression matching the whole issuer.",
)
@click.option(
    "--trusted-root",
    metavar="FILE",
    help="Keyless: the Sigstore trusted root (JSON) of the Fulcio CA, CT logs, transparency logs and "
    "timestamp authorities (default: the public-good root shipped with provgate; never fetched).",
)
def verify_cmd(
    image: tuple[str, ...],
    images_file: str | None,
    policy: tuple[str, ...],
    data: tuple[str, ...],
    keys: tuple[str, ...],
    attestations: str | None,
    engine: str,
    opa_url: str | None,
    output: str,
    insecure: tuple[str, ...],
    ca_file: str | None,
    timeout: float,
    trust_bundles: tuple[str, ...] = (),
    spiffe_ids: tuple[str, ...] = (),
    tsa_certs: tuple[str, ...] = (),
    certificate_identities: tuple[str, ...] = (),
    certificate_identity_regexps: tuple[str, ...] = (),
    certificate_oidc_issuer: str | None = None,
    certificate_oidc_issuer_regexp: str | None = None,
    trusted_root: str | None = None,
) -> int:
    import time

    from attestation.reference import parse
    from gate.offline import read_attestations_file
    from gate.verify import Gate, GateConfig

    deadline = time.monotonic() + timeout
    keyless: tuple[KeylessEntry, ...] = ()
    if certificate_identities or certificate_identity_regexps or certificate_oidc_issuer or trusted_root:
        from gate.trust_keyless import entries_from_flags

        keyless = tuple(
            entries_from_flags(
                certificate_identities,
                certificate_identity_regexps,
                certificate_oidc_issuer,
                certificate_oidc_issuer_regexp,
                trusted_root,
            )
        )
    if not keys and not trust_bundles and not keyless:
        raise click.UsageError(
            "no trust configured: give at least one --key (a PEM public key file), "
            "--trust-bundle with --spiffe-id, or --certificate-identity with --certificate-oidc-issuer"
        )
    images = list(image)
    if images_file is not None:
        from gate.batch import read_images_file

        images.extend(read_images_file(images_file))
    if not images:
        raise click.UsageError("give an IMAGE, or --images FILE")
    batch = len(images) > 1 or images_file is not None
    if batch and attestations is not None:
        raise click.UsageError("--attestations reads the attestations of one IMAGE; give exactly one")
    if batch and output == "policy-input":
        raise click.UsageError(
            "--output policy-input shows what the policy sees for one IMAGE; give exactly one"
        )
    if not batch:
        # Check the cheap things first, so a typo does not cost a policy compile.
        parse(images[0], require_digest=attestations is not None)
    raws = read_attestations_file(attestations) if attestations is not None else None
    config = GateConfig(
        policy_paths=_paths(policy),
        data_paths=_paths(data),
        key_files=_paths(keys),
        trust_bundles=tuple(trust_bundles),
        spiffe_ids=tuple(spiffe_ids),
        tsa_cert_files=_paths(tsa_certs),
        keyless=keyless,
        engine=engine,
        opa_url=opa_url,
        insecure_registries=tuple(insecure),
        ca_file=_paths([ca_file])[0] if ca_file else None,
        timeout=timeout,
    )
    if batch:
        import asyncio

        from gate.batch import verify_many

        with Gate(config) as gate:
            decisions = asyncio.run(verify_many(gate, images, deadline=deadline))
        return _emit_decisions(decisions, output)
    [image_ref] = images
    with Gate(config) as gate:
        if raws is not None:
            prepared = gate.prepare_offline(image_ref, raws)
        else:
            import asyncio

            prepared = asyncio.run(gate.prepare(image_ref, deadline=deadline))
        decision = gate.decide(prepared, deadline=deadline)
        if output == "policy-input":
            from gate.decision import Decision

            # The document the policy saw, whenever there is one; the exit code is the verdict's, as for
            # every other output (DESIGN.md §3), and the verdict goes to stderr.
            if not isinstance(prepared, Decision):
                _emit_json(prepared.policy_input())
            return _emit_verdict_line(decision)
    return _emit_decision(decision, output)


SERVE_HELP = """Serve the admission webhooks and the verification API over HTTPS.

\b
  POST /validate    AdmissionReview v1: deny images without trusted provenance
  POST /mutate      AdmissionReview v1: pin every image to the digest decided
  POST /v1/verify   {"image": "..."} or {"images": [...]} -> decision JSON
  GET  /healthz, /readyz, /metrics
\b
FILE uses the `gate verify` flag names (config/samples/gate.yaml documents
every key). Policies, data, trust and FILE itself are reloaded when they
change; the TLS certificate too. Stops on SIGTERM after the requests in flight.
\b
Example:
  gate serve --config gate.yaml
"""


@cli.command("serve", help=SERVE_HELP)
@click.option(
    "--config", "config_file", required=True, metavar="FILE", help="The server configuration (YAML)."
)
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of the configuration's listen.")
@click.pass_context
def serve_cmd(ctx: click.Context, config_file: str, listen: str | None) -> int:
    import logging

    from gate.serve.config import load_config, with_overrides
    from gate.serve.server import serve

    config = load_config(config_file)
    if listen is not None:
        from gate.serve.config import parse_listen

        config = with_overrides(config, listen=parse_listen(listen, "--listen"))
    _log_to_stderr(
        logging.DEBUG if ctx.parent is not None and ctx.parent.params.get("verbose") else logging.INFO
    )
    return serve(config)


def _log_to_stderr(level: int) -> None:
    """The server's log: one printable line per event on stderr."""
    import logging

    from gate.render import printable

    class Printable(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Printable("%(asctime)s gate serve: %(levelname)s: %(name)s: %(message)s"))
    for name in LOGGED_PACKAGES:
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.setLevel(level)


EVAL_HELP = """Evaluate a policy-input document (as printed by `gate verify --output
policy-input`) against a policy, with no registry and no signature checks: the
policy author's loop.

\b
Exit 0 allowed, 1 denied (including: no rule evaluated), 2 unusable input.
\b
Example:
  gate verify reg/app@sha256:... --key k.pub --attestations a.jsonl \\
      --output policy-input > input.json
  gate eval --input input.json --policy ./policy --data ./data
"""


@cli.command("eval", help=EVAL_HELP)
@click.option("--input", "input_file", required=True, metavar="FILE", help="Policy-input JSON document.")
@click.option(
    "--policy",
    "policy",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Rego policy file or directory (repeatable).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="PATH",
    help="Rule data file or directory of *.json/*.yaml/*.yml files (repeatable).",
)
@click.option("--engine", type=click.Choice(ENGINES), default="embedded", show_default=True, help=ENGINE_HELP)
@click.option("--opa-url", metavar="URL", help="OPA server for --engine opa.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def eval_cmd(
    input_file: str,
    policy: tuple[str, ...],
    data: tuple[str, ...],
    engine: str,
    opa_url: str | None,
    output: str,
) -> int:
    from attestation.errors import InputError
    from attestation.limits import load_json
    from gate.offline import evaluate_document

    try:
        with open(input_file, "rb") as f:
            raw = f.read(MAX_POLICY_INPUT_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read input file {input_file}: {err.strerror}") from None
    doc = load_json(raw, max_bytes=MAX_POLICY_INPUT_BYTES, what=f"input file {input_file}")
    if not isinstance(doc, dict):
        raise InputError(f"input file {input_file}: a policy input must be a JSON object")
    decision = evaluate_document(doc, _paths(policy), _paths(data), engine=engine, opa_url=opa_url)
    return _emit_decision(decision, output)


@cli.group("policy")
def policy_group() -> None:
    """Work on policies."""


POLICY_TEST_HELP = """Run the test_* rules of a policy tree (like `opa test`).

\b
Exit 0 all passed, 1 some failed, 2 the policy could not be loaded.
\b
Example:
  gate policy test ./policies
"""


@policy_group.command("test", help=POLICY_TEST_HELP)
@click.argument("path")
@click.option("--engine", type=click.Choice(ENGINES), default="embedded", show_default=True, help=ENGINE_HELP)
@click.option("--opa-url", metavar="URL", help="OPA server for --engine opa.")
def policy_test_cmd(path: str, engine: str, opa_url: str | None) -> int:
    from attestation.errors import InputError
    from gate.policy import run_policy_tests

    [root] = _paths([path])
    if not root.exists():
        raise InputError(f"policy path {path} does not exist")
    report = run_policy_tests(root, engine=engine, opa_url=opa_url)
    if not report.cases:
        raise InputError(f"policy path {path}: no test_* rules found")
    from gate.render import printable

    for case in report.cases:
        if case.passed:
            click.echo(printable(f"PASS {case.name}"))
        else:
            click.echo(printable(f"FAIL {case.name}" + (f": {case.error}" if case.error else "")))
    click.echo(printable(report.summary))
    return 0 if report.ok else 1


def _skip_httpx_cli() -> None:
    # httpx's package import also imports its own command-line client (click, rich, pygments) whenever
    # those happen to be installed, as they are here (sigstore needs rich): a large part of every registry
    # verification (docs/performance.md) for code this process never runs (fixed upstream only in a fork,
    # pydantic/httpx2#947).
    # A None entry in sys.modules makes that optional import fail, and httpx falls back to a stub (typeshed's
    # type of sys.modules leaves that marker out).
    if "httpx" not in sys.modules:
        cast("dict[str, ModuleType | None]", sys.modules).setdefault("httpx._main", None)


# Commands that run once and exit; never a server, which must keep its garbage collector.
ONE_SHOT_COMMANDS = frozenset({"verify", "eval"})


def _exit_now(code: int) -> None:
    """Flush what was printed and leave without the interpreter's teardown.

    Tearing down the tens of thousands of objects and hundreds of modules of a verification is a large
    part of the command (docs/performance.md) and frees nothing the operating system would not.
    Everything that must reach the caller has been written by now: the output (flushed here), the exit
    code; the registry client and the policy engine were closed by the command itself.
    """
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach the reader
            code = code or EXIT_UNDECIDED
    os._exit(code)


def _utf8_streams() -> None:
    """Whatever the locale, the gate prints UTF-8 (JSON must be UTF-8), and a character that cannot be
    encoded becomes an escape rather than an exception (gate.render escapes what is hostile first)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            reconfigure(encoding="utf-8", errors="backslashreplace")
        except (ValueError, OSError):  # a stream that cannot change now keeps its own encoding
            continue


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns (and exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if a not in ("-v", "--verbose")), None)
    one_shot = command in ONE_SHOT_COMMANDS
    if one_shot:
        import gc

        # Imports and the policy set create several hundred thousand objects; cyclic collection passes
        # over them take time (docs/performance.md) and reclaim nothing a process about to exit needs.
        gc.disable()
    _skip_httpx_cli()
    _utf8_streams()
    code = run(args)
    if one_shot:
        _exit_now(code)
    sys.exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    from attestation.errors import ProvgateError

    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="gate", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.format_message(), err=True)
        return EXIT_UNDECIDED
    except click.ClickException as err:
        ctx = getattr(err, "ctx", None)
        where = f" ({ctx.command_path})" if ctx is not None else ""
        _fail(err.format_message() + where)
        return EXIT_UNDECIDED
    except click.exceptions.Abort:
        _fail("aborted")
        return EXIT_UNDECIDED
    except ProvgateError as err:
        _fail(str(err))
        return EXIT_UNDECIDED
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_UNDECIDED
    except Exception as err:  # never a traceback, never exit 0
        _fail(f"internal error: {type(err).__name__}: {err}")
        return EXIT_UNDECIDED
    if rv is None:  # --help
        return 0
    return int(rv)


def _emit_decisions(decisions: Sequence[Decision], output: str) -> int:
    """Several decisions: one JSON document ``{"decisions": [...]}``, or each as text with a summary;
    the exit code is the worst of them (could not decide, then denied, then allowed)."""
    from gate.decision import render_text

    for decision in decisions:
        if not decision.decided:
            for err in decision.errors:
                _fail(f"{decision.image}: {err}")
    if output == "json":
        _emit_json({"decisions": [d.to_dict() for d in decisions]})
    else:
        for decision in decisions:
            click.echo(render_text(decision))
        counts = {
            v: sum(1 for d in decisions if d.verdict == v) for v in ("allowed", "denied", "could not decide")
        }
        click.echo(", ".join(f"{n} {v}" for v, n in counts.items() if n) + f" ({len(decisions)} images)")
    return max(d.exit_code for d in decisions)


def _emit_verdict_line(decision: Decision) -> int:
    """For outputs that are not the decision: the verdict on stderr (the reasons when not allowed);
    returns the decision's exit code."""
    from gate.render import printable

    if not decision.decided:
        for err in decision.errors:
            _fail(err)
        return decision.exit_code
    if decision.allowed:
        return decision.exit_code
    click.echo(printable(f"gate: denied: {decision.image}"), err=True)
    for v in decision.violations:
        click.echo(printable(f"gate:   [{v.code}] {' '.join(v.msg.split())}"), err=True)
    return decision.exit_code


def _emit_decision(decision: Decision, output: str) -> int:
    """Print a decision the way every command does; an undecided one also goes to stderr."""
    from gate.decision import render_text

    if not decision.decided:
        for err in decision.errors:
            _fail(err)
    if output == "json":
        _emit_json(decision.to_dict())
    else:
        click.echo(render_text(decision), nl=False)
    return decision.exit_code
