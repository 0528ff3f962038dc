"""A private Sigstore on loopback for the keyless tests: Fulcio (file CA, SPIFFE issuers), a CT log
(TesseraCT), a transparency log (rekor-tiles, Rekor v2), the shared timestamp authority, and SPIRE's OIDC
discovery provider in front of each SPIRE server, so Fulcio can check the servers' JWT-SVIDs.

The versions, flags and traps are in ../shared/reference/keyless-local-sigstore.md. In short: every
metrics port is set explicitly (Fulcio and rekor-tiles default to the TSA's fixed 2112), Fulcio gets its
own legacy gRPC socket file (the default is a fixed abstract socket name: a second Fulcio on the host would
die), rekor-tiles' ``--hostname`` is the host of its URL (sigstore-go takes the checkpoint origin from the
trusted root's ``baseUrl``), and Rekor v2 gives no integrated time, so the TSA is part of the stack.

Everything the clients trust is generated per session: the Fulcio CA, the CT, Rekor keys, the trusted root
and the signing config (Sigstore's JSON formats; ``client_trust_config`` holds both, as the signer's
``--trust-config`` and sigstore-python take them). The CA key stays available to tests that must forge a
certificate the real Fulcio would never issue.

Tests using it carry ``pytest.mark.xdist_group("spire")``: the stack shares the session's SPIRE servers and
TSA (one TSA per machine).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.infra import free_port, require_binary, stop, wait_for_port
from tests.infra.spire import Spire, SpireServer
from tests.infra.tsa import Tsa

AUDIENCE = "sigstore"
# Long enough for a slow session; the trusted root's validity starts well before any certificate.
ROOT_VALIDITY = dt.timedelta(days=3650)
TRUST_START = "2020-01-01T00:00:00Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_fulcio_ca(
    common_name: str = "provgate test fulcio",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 root CA as Fulcio's file CA wants it (CA:true, keyCertSign, SKI/AKI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provgate tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def trusted_root_doc(
    *,
    fulcio_url: str,
    fulcio_certs: list[x509.Certificate],
    rekor_url: str,
    rekor_key: ec.EllipticCurvePrivateKey,
    ct_url: str,
    ct_key: ec.EllipticCurvePrivateKey,
    tsa_url: str | None,
    tsa_chain: list[x509.Certificate],
) -> dict[str, Any]:
    """A Sigstore trusted root (``trustedroot+json;version=0.1``) for these services and keys."""

    def tlog(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        spki = _spki(key)
        key_id = {"keyId": _b64(hashlib.sha256(spki).digest())}
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(spki),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": TRUST_START},
            },
            "logId": key_id,
        }

    def der(cert: x509.Certificate) -> dict[str, str]:
        return {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))}

    doc: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [tlog(rekor_url, rekor_key)],
        "certificateAuthorities": [
            {
                "subject": {"organization": "provgate tests", "commonName": "fulcio"},
                "uri": fulcio_url,
                "certChain": {"certificates": [der(c) for c in fulcio_certs]},
                "validFor": {"start": TRUST_START},
            }
        ],
        "ctlogs": [tlog(ct_url, ct_key)],
        "timestampAuthorities": [],
    }
    if tsa_chain:
        doc["timestampAuthorities"] = [
            {
                "subject": {"organization": "provgate tests", "commonName": "tsa"},
                "uri": tsa_url or "",
                "certChain": {"certificates": [der(c) for c in tsa_chain]},
                "validFor": {"start": TRUST_START},
            }
        ]
    return doc


def signing_config_doc(
    *, fulcio_url: str, rekor_url: str | None, tsa_url: str | None, oidc_url: str | None = None
) -> dict[str, Any]:
    """A signing config (``signingconfig.v0.2``): where to get certificates, log entries and timestamps."""

    def service(url: str, version: int) -> dict[str, Any]:
        return {
            "url": url,
            "majorApiVersion": version,
            "validFor": {"start": TRUST_START},
            "operator": "provgate-tests",
        }

    doc: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [service(fulcio_url, 1)],
        # cosign picks an OIDC issuer from here even when its SPIFFE provider supplies the token.
        "oidcUrls": [service(oidc_url, 1)] if oidc_url else [],
        "rekorTlogUrls": [service(rekor_url, 2)] if rekor_url else [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaUrls": [service(tsa_url, 1)] if tsa_url else [],
        "tsaConfig": {"selector": "ANY"},
    }
    return doc


def client_trust_config_doc(trusted_root: dict[str, Any], signing_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": trusted_root,
        "signingConfig": signing_config,
    }


@dataclass
class SigstoreStack:
    """The running services and what a client trusts about them."""

    dir: Path
    spire: Spire
    other: SpireServer  # a second trust domain (other.org), its own issuer; tokens by `jwt mint`
    fulcio_url: str
    rekor_url: str
    ct_url: str
    tsa: Tsa
    fulcio_cert: x509.Certificate
    fulcio_key: ec.EllipticCurvePrivateKey
    rekor_key: ec.EllipticCurvePrivateKey
    ct_key: ec.EllipticCurvePrivateKey
    trusted_root: dict[str, Any]
    signing_config: dict[str, Any]
    trusted_root_file: Path
    signing_config_file: Path
    trust_config_file: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        """The OIDC issuer Fulcio writes into certificates for ``example.org`` workloads."""
        return self.spire.server.jwt_issuer

    @property
    def tsa_chain(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.tsa.chain_pem)

    def write_trust_config(
        self,
        path: Path,
        *,
        fulcio_url: str | None = None,
        rekor_url: str | None = None,
        tsa_url: str | None = None,
    ) -> Path:
        """A client trust config for this stack with some service URLs replaced (e.g. by a dead port)."""
        signing = signing_config_doc(
            fulcio_url=fulcio_url or self.fulcio_url,
            rekor_url=rekor_url or self.rekor_url,
            tsa_url=tsa_url or self.tsa.url,
            oidc_url=self.issuer,
        )
        path.write_text(json.dumps(client_trust_config_doc(self.trusted_root, signing), indent=2))
        return path

    def jwt_svid(self, spiffe_id: str, audience: str = AUDIENCE) -> str:
        """A JWT-SVID for ``spiffe_id`` from the agent's Workload API (the entry must be registered)."""
        from spiffe import WorkloadApiClient

        with WorkloadApiClient(socket_path=self.spire.workload_socket) as client:
            return str(client.fetch_jwt_svid(audience={audience}, subject=spiffe_id).token)


def _start(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=out, **kwargs)


def _tail(log: Path) -> str:
    try:
        return log.read_bytes()[-1500:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {_tail(log)}")
        try:
            reply = httpx.get(url, timeout=2)
            if reply.status_code < 500:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last}): {_tail(log)}")


_DISCOVERY_CONF = """
log_level = "INFO"
domains = ["127.0.0.1", "localhost"]
allow_insecure_scheme = true
insecure_addr = "127.0.0.1:{port}"
jwt_issuer = "{issuer}"
server_api {{
  address = "unix://{socket}"
  poll_interval = "1s"
}}
"""


def _discovery_provider(server: SpireServer, base: Path, name: str) -> subprocess.Popen:
    binary = require_binary("oidc-discovery-provider")
    port = int(server.jwt_issuer.rsplit(":", 1)[1])
    conf = base / f"{name}-discovery.conf"
    conf.write_text(_DISCOVERY_CONF.format(port=port, issuer=server.jwt_issuer, socket=server.socket))
    log = base / f"{name}-discovery.log"
    proc = _start([str(binary), "-config", str(conf)], log)
    # The keys arrive from the server API after the first poll: wait until the JWKS has one.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"oidc-discovery-provider exited with {proc.returncode}: {_tail(log)}")
        try:
            keys = httpx.get(f"{server.jwt_issuer}/keys", timeout=2).json().get("keys")
            if keys:
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"oidc-discovery-provider for {server.trust_domain} served no keys: {_tail(log)}")


@contextlib.contextmanager
def run_sigstore(spire: Spire, other: SpireServer, tsa: Tsa) -> Iterator[SigstoreStack]:
    base = Path(tempfile.mkdtemp(prefix="sgs", dir="/tmp"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["discovery"] = _discovery_provider(spire.server, base, "example")
        procs["discovery-other"] = _discovery_provider(other, base, "other")

        fulcio_cert, fulcio_key = make_fulcio_ca()
        (base / "fulcio-root.pem").write_bytes(fulcio_cert.public_bytes(serialization.Encoding.PEM))
        (base / "fulcio-root.key").write_bytes(
            fulcio_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ct_key = ec.generate_private_key(ec.SECP256R1())
        (base / "ct.key").write_bytes(
            ct_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,  # SEC1, as TesseraCT wants
                serialization.NoEncryption(),
            )
        )
        (base / "ct.pub").write_bytes(
            ct_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        rekor_key = ec.generate_private_key(ec.SECP256R1())
        (base / "rekor.key").write_bytes(
            rekor_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

        # CT log: accepts chains to the Fulcio root.
        ct_port = free_port()
        # TesseraCT parses the origin as a URL: host:port is not one.
        ct_origin = "ct.provgate.test"
        (base / "ct").mkdir()
        log = base / "tesseract.log"
        procs["tesseract"] = _start(
            [
                str(require_binary("tesseract")),
                "--http_endpoint",
                f"127.0.0.1:{ct_port}",
                "--origin",
                ct_origin,
                "--storage_dir",
                str(base / "ct"),
                "--private_key",
                str(base / "ct.key"),
                "--roots_pem_file",
                str(base / "fulcio-root.pem"),
                "--checkpoint_interval",
                "500ms",
                "--garbage_collection_interval",
                "0",
            ],
            log,
        )
        try:
            wait_for_port(ct_port, procs["tesseract"], timeout=60)
        except RuntimeError as err:
            raise RuntimeError(f"{err}: {_tail(log)}") from None
        ct_url = f"http://127.0.0.1:{ct_port}"

        # Fulcio: file CA, one SPIFFE issuer per trust domain.
        issuers = {
            server.jwt_issuer: {
                "IssuerURL": server.jwt_issuer,
                "ClientID": AUDIENCE,
                "Type": "spiffe",
                "SPIFFETrustDomain": server.trust_domain,
            }
            for server in (spire.server, other)
        }
        (base / "fulcio.json").write_text(json.dumps({"OIDCIssuers": issuers}))
        fulcio_port = free_port()
        socket = base / "fulcio-legacy.sock"
        log = base / "fulcio.log"
        procs["fulcio"] = _start(
            [
                str(require_binary("fulcio")),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(fulcio_port),
                "--grpc-host",
                "127.0.0.1",
                "--grpc-port",
                str(free_port()),
                "--metrics-port",
                str(free_port()),
                "--legacy-unix-domain-socket",
                str(socket),
                "--ca",
                "fileca",
                "--fileca-cert",
                str(base / "fulcio-root.pem"),
                "--fileca-key",
                str(base / "fulcio-root.key"),
                "--fileca-key-passwd",
                "",
                "--fileca-watch=false",
                "--config-path",
                str(base / "fulcio.json"),
                "--ct-log-url",
                ct_url,
                "--ct-log-origin",
                ct_origin,
                "--ct-log-public-key-path",
                str(base / "ct.pub"),
            ],
            log,
            cwd=base,
        )
        fulcio_url = f"http://127.0.0.1:{fulcio_port}"
        _wait_http(f"{fulcio_url}/api/v2/trustBundle", procs["fulcio"], log)

        # Rekor v2 (POSIX tiles); the checkpoint origin is the host of its URL.
        rekor_port = free_port()
        (base / "rekor").mkdir()
        log = base / "rekor.log"
        procs["rekor"] = _start(
            [
                str(require_binary("rekor-tiles")),
                "serve",
                "--http-address",
                "127.0.0.1",
                "--http-port",
                str(rekor_port),
                "--grpc-address",
                "127.0.0.1",
                "--grpc-port",
                str(free_port()),
                "--http-metrics-port",
                str(free_port()),
                "--hostname",
                "127.0.0.1",
                "--storage-dir",
                str(base / "rekor"),
                "--signer-filepath",
                str(base / "rekor.key"),
                "--checkpoint-interval",
                "500ms",
            ],
            log,
            cwd=base,
        )
        try:
            wait_for_port(rekor_port, procs["rekor"], timeout=60)
        except RuntimeError as err:
            raise RuntimeError(f"{err}: {_tail(log)}") from None
        rekor_url = f"http://127.0.0.1:{rekor_port}"

        tsa_chain = x509.load_pem_x509_certificates(tsa.chain_pem)
        trusted_root = trusted_root_doc(
            fulcio_url=fulcio_url,
            fulcio_certs=[fulcio_cert],
            rekor_url=rekor_url,
            rekor_key=rekor_key,
            ct_url=ct_url,
            ct_key=ct_key,
            tsa_url=tsa.url,
            tsa_chain=tsa_chain,
        )
        signing_config = signing_config_doc(
            fulcio_url=fulcio_url, rekor_url=rekor_url, tsa_url=tsa.url, oidc_url=spire.server.jwt_issuer
        )
        trusted_root_file = base / "trusted_root.json"
        trusted_root_file.write_text(json.dumps(trusted_root, indent=2))
        signing_config_file = base / "signing_config.json"
        signing_config_file.write_text(json.dumps(signing_config, indent=2))
        trust_config_file = base / "trust_config.json"
        trust_config_file.write_text(
            json.dumps(client_trust_config_doc(trusted_root, signing_config), indent=2)
        )
        yield SigstoreStack(
            dir=base,
            spire=spire,
            other=other,
            fulcio_url=fulcio_url,
            rekor_url=rekor_url,
            ct_url=ct_url,
            tsa=tsa,
            fulcio_cert=fulcio_cert,
            fulcio_key=fulcio_key,
            rekor_key=rekor_key,
            ct_key=ct_key,
            trusted_root=trusted_root,
            signing_config=signing_config,
            trusted_root_file=trusted_root_file,
            signing_config_file=signing_config_file,
            trust_config_file=trust_config_file,
            processes=procs,
        )
    finally:
        for proc in reversed(list(procs.values())):
            stop(proc)
        if os.environ.get("PROVGATE_KEEP_SIGSTORE_LOGS"):
            print(f"sigstore stack logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sigstore_stack(spire: Spire, spire_other_domain: SpireServer, tsa: Tsa) -> Iterator[SigstoreStack]:
    with run_sigstore(spire, spire_other_domain, tsa) as stack:
        yield stack
