"""Configuration changes reach the running operator: a new format applies to the next run without a
restart; a change that does not parse is reported (Event on the ConfigMap) and the last good
configuration stays; a ConfigMap unusable at start keeps the operator unready, never in a crash loop; a
bad ``--config FILE`` is one line and exit 2."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from tests.infra.kube import wait_until
from tests.infra.tekton import complete_taskrun, new_taskrun
from tests.operator.conftest import SIGNED, Setup

CONFIG = {"artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "tekton"}


def predicate_type(setup: Setup, name: str) -> str:
    run = setup.wait_marked(name)
    notes = run["metadata"]["annotations"]
    assert notes[SIGNED] == "true", setup.logs()
    envelope = json.loads(
        base64.b64decode(notes[f"chains.tekton.dev/signature-taskrun-{run['metadata']['uid']}"])
    )
    return str(json.loads(base64.b64decode(envelope["payload"]))["predicateType"])


def config_events(setup: Setup) -> list[str]:
    found = setup.core.list_namespaced_event(
        setup.namespace, field_selector="involvedObject.name=chains-config"
    )
    return [e.message for e in found.items if e.reason == "InvalidConfiguration"]


def attest_one(setup: Setup, name: str) -> str:
    new_taskrun(setup.kube.api, setup.runs, name)
    complete_taskrun(setup.kube.api, setup.runs, name, results={"X": "y"})
    return predicate_type(setup, name)


def wait_config(operator, old: str) -> None:
    def changed() -> bool:
        text = operator.metrics()
        return "provgate_signer_config_info{" in text and f'digest="{old}"' not in text

    wait_until(changed, what="the new configuration in force", timeout=30)


def current_digest(operator) -> str:
    for line in operator.metrics().splitlines():
        if line.startswith("provgate_signer_config_info{"):
            return line.split('digest="', 1)[1].split('"', 1)[0]
    raise AssertionError("no config_info metric")


def test_a_format_change_applies_to_the_next_run_without_a_restart(setup: Setup) -> None:
    setup.configure(CONFIG)
    operator = setup.start()
    assert attest_one(setup, "before") == "https://slsa.dev/provenance/v0.2"
    old = current_digest(operator)
    setup.configure({**CONFIG, "artifacts.taskrun.format": "slsa/v2alpha4"})
    wait_config(operator, old)
    assert attest_one(setup, "after") == "https://slsa.dev/provenance/v1"
    assert len(setup.processes) == 1 and operator.proc.poll() is None


def test_a_change_that_does_not_parse_keeps_the_last_good_configuration(setup: Setup) -> None:
    setup.configure(CONFIG)
    operator = setup.start()
    setup.configure({**CONFIG, "artifacts.taskrun.format": "slsa/v9", "no.such.key": "x"})
    messages = wait_until(lambda: config_events(setup), what="an InvalidConfiguration Event", timeout=30)
    assert "artifacts.taskrun.format" in messages[0] and "slsa/v9" in messages[0]
    assert "previous configuration stays in force" in messages[0]
    assert operator.ready()
    assert attest_one(setup, "still-v1") == "https://slsa.dev/provenance/v0.2"


def test_a_configmap_unusable_at_start_keeps_the_operator_unready_until_it_is_fixed(setup: Setup) -> None:
    setup.configure({"artifacts.taskrun.storage": "gcs"})
    operator = setup.start(wait=False)
    messages = wait_until(lambda: config_events(setup), what="an InvalidConfiguration Event", timeout=30)
    assert "gcs storage is not supported" in messages[0]
    assert operator.proc.poll() is None and not operator.ready()
    new_taskrun(setup.kube.api, setup.runs, "waiting")
    complete_taskrun(setup.kube.api, setup.runs, "waiting", results={"X": "y"})
    setup.configure(CONFIG)
    operator.wait_ready()
    assert predicate_type(setup, "waiting") == "https://slsa.dev/provenance/v0.2"


def test_unknown_keys_are_logged_as_warnings(setup: Setup) -> None:
    setup.configure({**CONFIG, "artifacts.taskrun.fromat": "slsa/v2alpha4"})
    operator = setup.start()
    wait_until(lambda: "artifacts.taskrun.fromat" in operator.tail(), what="the warning", timeout=10)
    assert "unknown configuration key 'artifacts.taskrun.fromat' (ignored)" in operator.tail()


def test_a_bad_config_file_is_one_line_and_exit_2(setup: Setup) -> None:
    bad = setup.workdir / "chains-config.yaml"
    bad.write_text("artifacts.taskrun.format: slsa/v9\n")
    done = subprocess.run(
        [sys.executable, "-m", "signer.cli", "run", "--config", str(bad), "--no-leader-election"],
        # (the default --http-address: the configuration is refused before anything listens)
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(setup.kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: artifacts.taskrun.format: unknown provenance format 'slsa/v9' "
        "(known: slsa/v1, slsa/v2alpha3, slsa/v2alpha4, in-toto)"
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_in_use_is_one_line_and_exit_2(setup: Setup) -> None:
    import socket

    setup.configure(CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "signer.cli",
                "run",
                "--configmap",
                f"{setup.namespace}/chains-config",
                "--namespace",
                setup.namespace,
                "--http-address",
                f"127.0.0.1:{port}",
                "--no-leader-election",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"KUBECONFIG": str(setup.kube.kubeconfig), "PATH": "/usr/bin:/bin"},
        )
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --http-address 127.0.0.1:{port}: cannot listen: Address already in use"
    ], done.stderr
