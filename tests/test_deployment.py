"""docker-compose.yml cannot run here (no Docker engine); check what can be checked against the code."""
import ipaddress
import re
from pathlib import Path

import yaml

from proxy.config import ENV_PREFIX, build_parser

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
RELAYS = [name for name, service in SERVICES.items() if name.startswith("relay")]


def relay_flags() -> set[str]:
    return {opt for action in build_parser()._actions for opt in action.option_strings}


def test_two_relay_replicas_with_real_flags_and_env():
    assert len(RELAYS) == 2
    flags = relay_flags()
    for name in RELAYS:
        relay = SERVICES[name]
        for arg in relay["command"]:
            assert arg.split("=", 1)[0] in flags, f"{name}: {arg} is not a flag of odx-relay"
        for variable in relay["environment"]:
            flag = "--" + variable.removeprefix(ENV_PREFIX).lower().replace("_", "-")
            assert variable.startswith(ENV_PREFIX) and flag in flags, f"{variable} matches no flag"


def test_replicas_share_redis_and_the_staging_volume():
    for name in RELAYS:
        relay = SERVICES[name]
        assert "--redis=redis://redis:6379/0" in relay["command"]
        staging = next(a.split("=", 1)[1] for a in relay["command"] if a.startswith("--staging-dir="))
        assert f"staging:{staging}" in relay["volumes"]
        results = next(a.split("=", 1)[1] for a in relay["command"] if a.startswith("--results-dir="))
        assert f"results:{results}" in relay["volumes"]
        assert "redis" in relay["depends_on"]
    assert {"staging", "results", "redis-data"} <= set(COMPOSE["volumes"])


def test_nodes_are_nodeodx_and_every_relay_knows_them():
    nodes = [name for name, s in SERVICES.items() if s.get("image", "").startswith("webodm/nodeodx")]
    assert len(nodes) == 2
    for name in RELAYS:
        listed = SERVICES[name]["environment"]["ODX_RELAY_NODE"].split(",")
        assert listed == [f"http://{node}:3000" for node in nodes]


def test_users_see_one_port_that_balances_over_the_replicas():
    balancer = SERVICES["balancer"]
    assert balancer["ports"] == ["3000:3000"]
    conf_path = balancer["volumes"][0].split(":")[0]
    conf = (REPO / conf_path).read_text()
    assert sorted(re.findall(r"server (relay\d+):3000", conf)) == sorted(RELAYS)
    assert "proxy_request_buffering off" in conf, "uploads must stream through the balancer"
    for name in RELAYS:
        assert "--public-url=http://balancer:3000" in SERVICES[name]["command"]
        assert "--port=3000" in SERVICES[name]["command"]


def test_dockerfile_installs_what_the_entrypoint_runs():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["odx-relay"]' in dockerfile
    for package in ("shared", "proxy"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_the_balancer_names_clients_and_the_relays_trust_it_from_the_compose_network_only():
    """Behind nginx every request comes from nginx: without X-Forwarded-For (and the relays trusting it), five
    failed logins by anyone would lock every user out of /auth/login."""
    nginx = (REPO / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    subnet = ipaddress.ip_network(COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"])
    for name in RELAYS:
        trusted = [a.split("=", 1)[1] for a in SERVICES[name]["command"] if a.startswith("--trusted-proxy=")]
        assert [ipaddress.ip_network(t) for t in trusted] == [subnet], name
        assert "ports" not in SERVICES[name], f"{name} must be reachable through the balancer only"
