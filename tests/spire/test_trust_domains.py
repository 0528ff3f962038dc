"""A SPIFFE ID is issued only by its own trust domain's CA (issue 10, finding 1), at every place provgate
verifies an SVID: ``attestation.x509.verify_svid``, the gate's trust (``--trust-bundle [TD=]FILE``), the
signer's result and status-signature checks. With the bundles of two trust domains configured, a CA (or
an intermediate) of one must not vouch for an identity of the other, as go-spiffe's ``x509svid.Verify``
looks the bundle up by the leaf's trust domain. Certificates are made here; the same attack with a real
SPIRE CA is in test_trust_domains_real.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestation.errors import InputError, VerificationError
from attestation.spiffe import (
    TrustBundle,
    TrustBundles,
    load_bundle_args,
    parse_trust_bundle,
    parse_trust_bundles,
    split_bundle_arg,
)
from attestation.x509 import verify_svid
from gate.trust import load_trust_policy
from gate.verify import Gate, GateConfig
from signer.signing.spire import SvidSigner, sign_statement
from signer.spire.results import verify_run_results
from signer.spire.status import verify_status_signature
from tests.gate.conftest import IMAGE, data_file, policy_dir, slsa02_statement  # noqa: F401
from tests.spire.certs import NOW, Issued, make_ca, make_svid
from tests.spire.tekton import taskrun, termination_results
from tests.spire.test_status_signature import STATUS, _obj, sign_status

A, B = "example.org", "partner.org"
ID_A = f"spiffe://{A}/ns/provgate/sa/signer"
ID_B = f"spiffe://{B}/ns/provgate/sa/signer"


@pytest.fixture(scope="module")
def cas() -> dict[str, Issued]:
    """Each trust domain's root and an intermediate under it, SPIRE-style (naming their trust domain), and
    two roots that name none (a corporate root under SPIRE's UpstreamAuthority, say)."""
    root_a, root_b = make_ca(A), make_ca(B)
    return {
        "a": root_a,
        "b": root_b,
        "a-inter": make_ca(A, issuer=root_a),
        "b-inter": make_ca(B, issuer=root_b),
        "plain-a": make_ca(A, org="Corp A", spiffe_san=False),
        "plain-b": make_ca(B, org="Corp B", spiffe_san=False),
    }


def both(cas: dict[str, Issued], a: str = "a", b: str = "b") -> TrustBundles:
    return TrustBundles.bind(
        [TrustBundle((cas[a].cert,), "a.pem", A), TrustBundle((cas[b].cert,), "b.pem", B)]
    )


def pem_file(tmp_path: Path, name: str, *issued: Issued) -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(i.pem for i in issued))
    return path


def der64(issued: Issued) -> str:
    return base64.b64encode(issued.cert.public_bytes(Encoding.DER)).decode()


def spire_json(td: str, *issued: Issued, tainted: tuple[Issued, ...] = ()) -> dict:
    """One bundle as ``spire-server bundle show -output json`` prints it (fields as SPIRE v1.15)."""
    return {
        "trust_domain": td,
        "x509_authorities": [{"asn1": der64(i), "tainted": False} for i in issued]
        + [{"asn1": der64(i), "tainted": True} for i in tainted],
        "jwt_authorities": [],
        "refresh_hint": "0",
        "sequence_number": "1",
    }


def list_text(sections: dict[str, bytes]) -> bytes:
    """``spire-server bundle list`` (pretty): a header naming each trust domain above its bundle."""
    stars = b"*" * 40
    return b"\n".join(
        b"%s\n* %s\n%s\n%s" % (stars, td.encode(), stars, body) for td, body in sections.items()
    )


# --- verify_svid: the bundle of the ID's own trust domain, and no other -----------------------------------


@pytest.mark.parametrize(
    ("issuer", "chain"),
    [("a", ()), ("a-inter", ("a-inter",)), ("plain-a", ())],
    ids=["root-of-A", "intermediate-of-A", "root-of-A-naming-no-domain"],
)
def test_a_ca_of_one_domain_cannot_issue_for_the_other(cas, issuer: str, chain: tuple[str, ...]) -> None:
    bundles = both(
        cas,
        "plain-a" if issuer.startswith("plain") else "a",
        "plain-b" if issuer.startswith("plain") else "b",
    )
    forged = make_svid(cas[issuer], [ID_B])
    with pytest.raises(VerificationError, match="chain does not verify"):
        verify_svid(forged.cert, [cas[c].cert for c in chain], bundles, at=NOW, allowed_ids={ID_A, ID_B})
    # Control: the same issuer for its own trust domain verifies, so the refusal is about the domain.
    own = make_svid(cas[issuer], [ID_A])
    assert (
        verify_svid(own.cert, [cas[c].cert for c in chain], bundles, at=NOW, allowed_ids={ID_A}).spiffe_id
        == ID_A
    )


def test_each_domain_verifies_against_its_own_bundle(cas) -> None:
    bundles = both(cas)
    leaf_b = make_svid(cas["b-inter"], [ID_B])
    got = verify_svid(leaf_b.cert, [cas["b-inter"].cert], bundles, at=NOW, allowed_ids={ID_A, ID_B})
    assert got.spiffe_id == ID_B and got.chain[-1] == cas["b"].cert


def test_an_id_of_a_domain_without_a_bundle_is_refused(cas) -> None:
    only_a = TrustBundles.bind([TrustBundle((cas["a"].cert,), "a.pem", A)])
    leaf = make_svid(cas["a"], ["spiffe://third.org/ns/x/sa/y"])
    with pytest.raises(
        VerificationError,
        match=r"no trust bundle for its trust domain third\.org \(configured: example\.org\)",
    ):
        verify_svid(leaf.cert, [], only_a, at=NOW)


def test_a_bundle_not_bound_to_a_domain_verifies_nothing(cas) -> None:
    unbound = parse_trust_bundle(cas["a"].pem, source="a.pem")
    assert unbound.trust_domain is None
    with pytest.raises(ValueError, match="must be bound to its trust domain"):
        verify_svid(make_svid(cas["a"], [ID_A]).cert, [], unbound, at=NOW)


# --- bundle files: which trust domain each CA is for ------------------------------------------------------


def test_spire_json_of_one_domain_names_it(cas) -> None:
    [bundle] = parse_trust_bundles(json.dumps(spire_json(B, cas["b"])).encode(), source="b.json")
    assert bundle.trust_domain == B and bundle.authorities == (cas["b"].cert,)


def test_spire_bundle_list_json_gives_each_domain_its_own_cas(cas) -> None:
    doc = {
        "bundles": [spire_json(A, cas["a"]), spire_json(B, cas["b"], cas["b-inter"])],
        "next_page_token": "",
    }
    found = parse_trust_bundles(json.dumps(doc).encode(), source="list.json")
    assert {b.trust_domain: b.authorities for b in found} == {
        A: (cas["a"].cert,),
        B: (cas["b"].cert, cas["b-inter"].cert),
    }
    bundles = TrustBundles.bind(found)
    with pytest.raises(VerificationError, match="chain does not verify"):
        verify_svid(make_svid(cas["a"], [ID_B]).cert, [], bundles, at=NOW)


def test_spire_bundle_list_text_in_pem_and_spiffe_sections(cas) -> None:
    jwks = {"keys": [{"use": "x509-svid", "kty": "EC", "x5c": [der64(cas["b"])]}]}
    data = list_text({A: cas["a"].pem, B: json.dumps(jwks, indent=4).encode()})
    found = parse_trust_bundles(data, source="list.txt")
    assert [(b.trust_domain, b.authorities) for b in found] == [(A, (cas["a"].cert,)), (B, (cas["b"].cert,))]
    with pytest.raises(InputError, match="holds the bundles of 2 trust domains"):
        parse_trust_bundle(data, source="list.txt")


def test_a_tainted_authority_vouches_for_nothing(cas) -> None:
    [bundle] = parse_trust_bundles(
        json.dumps(spire_json(A, cas["a"], tainted=(cas["plain-a"],))).encode(), source="x"
    )
    assert bundle.authorities == (cas["a"].cert,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bundles": [{"x509_authorities": []}]}, "must be an object with a trust_domain string"),
        ({"trust_domain": "Example.ORG", "x509_authorities": []}, "must be lowercase"),
        ({"trust_domain": A, "x509_authorities": []}, "holds no X.509 authorities"),
        ({"trust_domain": A, "x509_authorities": [{"asn1": "!!"}]}, "is not a base64 DER certificate"),
        ({"bundles": [{"trust_domain": A, "x509_authorities": [{"asn1": "CA"}]}] * 2}, "appears twice"),
    ],
)
def test_bad_spire_json_gives_one_clear_error(cas, data: dict, message: str) -> None:
    for bundle in data.get("bundles", []):
        for authority in bundle.get("x509_authorities", []):
            authority["asn1"] = der64(cas["a"]) if authority["asn1"] == "CA" else authority["asn1"]
    with pytest.raises(InputError, match=message) as info:
        parse_trust_bundles(json.dumps(data).encode(), source="bad.json")
    assert str(info.value).startswith("bad.json") and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("bundle.pem", (None, "bundle.pem")),
        ("example.org=bundle.pem", (A, "bundle.pem")),
        ("example.org=/etc/spire/b=1.pem", (A, "/etc/spire/b=1.pem")),
        ("./a=b.pem", (None, "./a=b.pem")),  # a path with "=": written with its directory
        ("/etc/x=y.pem", (None, "/etc/x=y.pem")),
        ("Example.org=b.pem", (None, "Example.org=b.pem")),  # not a trust domain name, so a path
        ("=b.pem", (None, "=b.pem")),
    ],
)
def test_trust_domain_prefix_of_a_bundle_argument(arg: str, expected: tuple) -> None:
    assert split_bundle_arg(arg) == expected


def test_pem_files_mapped_to_their_domains(tmp_path: Path, cas) -> None:
    bundles = load_bundle_args(
        [
            f"{A}={pem_file(tmp_path, 'a.pem', cas['plain-a'])}",
            f"{B}={pem_file(tmp_path, 'b.pem', cas['plain-b'])}",
        ]
    )
    assert bundles.trust_domains == (A, B)
    assert bundles.for_trust_domain(B).authorities == (cas["plain-b"].cert,)


def test_a_file_without_a_domain_needs_one(tmp_path: Path, cas) -> None:
    path = pem_file(tmp_path, "a.pem", cas["a"])
    assert load_bundle_args([path], default_trust_domain=A).trust_domains == (A,)
    with pytest.raises(
        InputError, match=rf"does not say which trust domain its CAs are for; give it as TD={path}"
    ):
        load_bundle_args([path])


def test_td_prefix_picks_one_domain_from_a_file_that_names_several(tmp_path: Path, cas) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"bundles": [spire_json(A, cas["a"]), spire_json(B, cas["b"])]}))
    assert load_bundle_args([f"{B}={path}"]).trust_domains == (B,)
    with pytest.raises(InputError, match=r"holds no bundle for trust domain third\.org"):
        load_bundle_args([f"third.org={path}"])


def test_a_ca_naming_another_domain_is_refused_for_this_one(tmp_path: Path, cas) -> None:
    # SPIRE's CAs carry spiffe://<td>: B's CA given as A's (or both concatenated as A's) is a mistake that
    # would let B speak for A; it is refused when the trust is loaded.
    for files in ([cas["b"]], [cas["a"], cas["b"]]):
        path = pem_file(tmp_path, "mixed.pem", *files)
        with pytest.raises(
            InputError, match=r"belongs to trust domain partner\.org \(URI SAN\), not example\.org"
        ):
            load_bundle_args([f"{A}={path}"])


def test_two_files_for_one_domain_are_merged(tmp_path: Path, cas) -> None:
    old, new = (
        pem_file(tmp_path, "old.pem", cas["a"]),
        pem_file(tmp_path, "new.pem", cas["a-inter"], cas["a"]),
    )
    [bundle] = load_bundle_args([old, new], default_trust_domain=A).bundles
    assert bundle.authorities == (cas["a"].cert, cas["a-inter"].cert)


# --- the gate -------------------------------------------------------------------------------------------


def _line(issuer: Issued, spiffe_id: str, chain: tuple[Issued, ...] = ()) -> bytes:
    svid = make_svid(issuer, [spiffe_id])
    signer = SvidSigner(spiffe_id, [svid.cert, *(c.cert for c in chain)], svid.key)
    return sign_statement(slsa02_statement(), signer).portable()


def _gate(policy_dir: Path, data_file: Path, bundles: list[str | Path], ids=(ID_A, ID_B)) -> Gate:  # noqa: F811
    return Gate(
        GateConfig(
            policy_paths=(policy_dir,), data_paths=(data_file,), trust_bundles=tuple(bundles), spiffe_ids=ids
        )
    )


@pytest.mark.parametrize("layout", ["two-pem-files", "spire-list-json"])
def test_gate_admits_each_domain_only_with_its_own_ca(
    tmp_path: Path,
    cas,
    policy_dir: Path,  # noqa: F811
    data_file: Path,  # noqa: F811
    layout: str,
) -> None:
    if layout == "two-pem-files":
        bundles: list[str | Path] = [
            f"{A}={pem_file(tmp_path, 'a.pem', cas['a'])}",
            f"{B}={pem_file(tmp_path, 'b.pem', cas['b'])}",
        ]
    else:
        path = tmp_path / "list.json"
        path.write_text(json.dumps({"bundles": [spire_json(A, cas["a"]), spire_json(B, cas["b"])]}))
        bundles = [path]
    with _gate(policy_dir, data_file, bundles) as gate:
        for issuer, spiffe_id, chain in [("a", ID_A, ()), ("b", ID_B, ()), ("b-inter", ID_B, ("b-inter",))]:
            decision = gate.verify_sync(
                IMAGE, attestations=[_line(cas[issuer], spiffe_id, tuple(cas[c] for c in chain))]
            )
            assert decision.allowed, decision.to_dict()
        for issuer, spiffe_id, chain in [("a", ID_B, ()), ("a-inter", ID_B, ("a-inter",)), ("b", ID_A, ())]:
            decision = gate.verify_sync(
                IMAGE, attestations=[_line(cas[issuer], spiffe_id, tuple(cas[c] for c in chain))]
            )
            assert not decision.allowed and decision.exit_code == 1
            [report] = decision.attestations
            assert not report.verified and "certificate chain does not verify" in report.error


def test_gate_configuration_names_what_is_missing(tmp_path: Path, cas) -> None:
    a_pem = pem_file(tmp_path, "a.pem", cas["a"])
    with pytest.raises(
        InputError,
        match=r"give it as TD=.*a\.pem \(the --spiffe-id values name 2 trust domains: example\.org, partner",
    ):
        load_trust_policy(trust_bundles=[a_pem], spiffe_ids=[ID_A, ID_B])
    with pytest.raises(
        InputError, match=rf"--spiffe-id {ID_B}: no --trust-bundle for its trust domain partner\.org"
    ):
        load_trust_policy(trust_bundles=[f"{A}={a_pem}"], spiffe_ids=[ID_A, ID_B])
    # Today's single-bundle command line keeps working: one trust domain among the IDs.
    trust = load_trust_policy(trust_bundles=[a_pem], spiffe_ids=[ID_A])
    assert [b.trust_domain for b in trust.x509_bundles] == [A]


# --- the signer: TaskRun results and the controller's status signature -----------------------------------


def _signed_taskrun(issuer: Issued, td: str = A, name: str = "build-1", ns: str = "ci") -> dict:
    svid = make_svid(issuer, [f"spiffe://{td}/ns/{ns}/taskrun/{name}"])
    results = termination_results({"IMAGE_DIGEST": "sha256:" + "ab" * 32}, svid.key, svid.pem.decode())
    return taskrun(name, ns, results)


def test_results_signed_by_another_domains_ca_do_not_verify(cas) -> None:
    bundles = both(cas)
    assert verify_run_results(_signed_taskrun(cas["a"]), trust_domain=A, bundle=bundles).verified
    for issuer in ("b", "b-inter"):
        verdict = verify_run_results(_signed_taskrun(cas[issuer]), trust_domain=A, bundle=bundles)
        assert not verdict.verified
        assert any("chain does not verify" in r for r in verdict.reasons), verdict.reasons


def test_a_lone_bundle_is_the_taskrun_domains_and_must_not_name_another(cas) -> None:
    unbound = parse_trust_bundle(cas["a"].pem, source="a.pem")
    assert verify_run_results(_signed_taskrun(cas["a"]), trust_domain=A, bundle=unbound).verified
    b_as_a = parse_trust_bundle(cas["b"].pem, source="b.pem")
    with pytest.raises(InputError, match=r"belongs to trust domain partner\.org"):
        verify_run_results(_signed_taskrun(cas["b"]), trust_domain=A, bundle=b_as_a)


def test_controller_svid_must_come_from_its_own_domains_ca(cas) -> None:
    controller_b = f"spiffe://{B}/tekton-pipelines/controller"
    bundles = both(cas)
    forged = make_svid(cas["a"], [controller_b])  # A's CA speaking for B's controller
    obj = sign_status(_obj(STATUS), forged.key, forged.pem.decode())
    reasons = verify_status_signature(obj, bundle=bundles)
    assert len(reasons) == 1 and "controller SVID" in reasons[0] and "chain does not verify" in reasons[0]
    # B's own CA: verified against B's bundle (a federated controller).
    real = make_svid(cas["b"], [controller_b])
    assert (
        verify_status_signature(sign_status(_obj(STATUS), real.key, real.pem.decode()), bundle=bundles) == []
    )
    # Without B's bundle there is nothing to verify it against.
    only_a = TrustBundles.bind([TrustBundle((cas["a"].cert,), "a.pem", A)])
    reasons = verify_status_signature(sign_status(_obj(STATUS), real.key, real.pem.decode()), bundle=only_a)
    expected = f"SPIFFE ID {controller_b}: no trust bundle for its trust domain {B} (configured: {A})"
    assert reasons == [f"controller SVID: {expected}"]


def test_signer_cli_verify_results_with_a_bundle_per_domain(tmp_path: Path, cas) -> None:
    from tests.spire.test_cli_spire import signer

    a_pem, b_pem = pem_file(tmp_path, "a.pem", cas["a"]), pem_file(tmp_path, "b.pem", cas["b"])
    for issuer, code in (("a", 0), ("b", 1)):
        run = tmp_path / f"run-{issuer}.json"
        run.write_text(json.dumps(_signed_taskrun(cas[issuer])))
        done = signer(
            "verify-results",
            str(run),
            "--trust-bundle",
            f"{A}={a_pem}",
            "--trust-bundle",
            f"{B}={b_pem}",
            "--trust-domain",
            A,
        )
        assert done.returncode == code, done.stderr + done.stdout
        if code:
            assert "SVID: certificate chain does not verify" in done.stdout
    done = signer("verify-results", str(run), "--trust-bundle", f"{A}={b_pem}", "--trust-domain", A)
    assert done.returncode == 2 and "belongs to trust domain partner.org" in done.stderr
