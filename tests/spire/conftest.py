"""Fixtures the SPIRE suites share: real SPIRE servers/agent, the real TSA, real registries, the gate's
test policy, and the in-process signer CLI runner."""

from pathlib import Path

from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import registry_plain, registry_referrers  # noqa: F401
from tests.infra.spire import spire, spire_other_domain, spire_rogue  # noqa: F401
from tests.infra.tsa import tsa  # noqa: F401
from tests.signer.test_cli import signer  # noqa: F401


def pytest_collection_modifyitems(config, items) -> None:
    """Keep ``xdist_group("spire")`` tests on one worker under pytest >= 9.2.

    pytest-xdist 3.8 groups by appending ``@<group>`` to ``item._nodeid``; pytest 9.2 derives the node id
    from ``item._id`` instead, so the suffix is lost and ``--dist loadgroup`` silently spreads the group
    over all workers (pytest-dev/pytest-xdist#1386). Then two workers start a TSA, whose metrics port
    2112 is fixed, and one fails. Until xdist fixes it, set the suffix where pytest now reads it, for
    the tests in this directory only.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9.2: xdist's own suffix works
        return
    here = Path(__file__).parent
    for item in items:
        if here not in Path(item.path).parents or item.nodeid.rfind("@") > item.nodeid.rfind("]"):
            continue
        groups = {
            m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")
        }
        if groups:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(map(str, groups)))}")
