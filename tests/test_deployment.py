"""docker-compose.yml cannot run here (no Docker engine); check what can be checked against the code."""
from pathlib import Path

import yaml

from proxy.config import ENV_PREFIX, build_parser

REPO = Path(__file__).resolve().parents[1]


def relay_flags() -> set[str]:
    return {opt for action in build_parser()._actions for opt in action.option_strings}


def test_compose_relay_uses_real_flags_and_env():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    relay = compose["services"]["relay"]
    flags = relay_flags()
    for arg in relay["command"]:
        assert arg.split("=", 1)[0] in flags, f"{arg} is not a flag of odx-relay"
    for name in relay["environment"]:
        flag = "--" + name.removeprefix(ENV_PREFIX).lower().replace("_", "-")
        assert name.startswith(ENV_PREFIX) and flag in flags, f"{name} matches no flag"
    assert relay["ports"] == ["3000:3000"] and "--port=3000" in relay["command"]


def test_compose_nodes_are_nodeodx_and_referenced_by_the_relay():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    nodes = [name for name, s in compose["services"].items() if s.get("image", "").startswith("webodm/nodeodx")]
    assert len(nodes) == 2
    for name in nodes:
        assert f"--node=http://{name}:3000" in compose["services"]["relay"]["command"]
    assert set(compose["services"]["relay"]["depends_on"]) == set(nodes)
    for volume in compose["services"]["relay"]["volumes"]:
        assert volume.split(":")[0] in compose["volumes"]


def test_dockerfile_installs_what_the_entrypoint_runs():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["odx-relay"]' in dockerfile
    for package in ("shared", "proxy"):
        assert f"COPY {package} ./{package}" in dockerfile
