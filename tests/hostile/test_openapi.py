"""The OpenAPI document: valid, served without a token, and in step with the routes the relay registers."""
from __future__ import annotations

import pytest
import requests

from proxy.app import create_app
from proxy.config import RelayConfig
from proxy.openapi import PATH, document
from tests.hostile.hostile_helpers import Hostile

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
METHODS = {"get", "post", "put", "patch", "delete"}


def registered_routes() -> set[tuple[str, str]]:
    """(METHOD, path template) for every route of the application, HEAD aside (aiohttp adds one per GET)."""
    app = create_app(RelayConfig())
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}


def test_the_document_is_valid_openapi() -> None:
    openapi_spec_validator.validate(document())


def test_every_registered_route_is_documented_and_nothing_else() -> None:
    registered, documented = registered_routes(), documented_routes(document())
    assert registered - documented == set(), "routes missing from the OpenAPI document"
    assert documented - registered == set(), "documented routes the relay does not have"


def test_every_path_parameter_is_declared() -> None:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(part[1:-1] for part in path.split("/") if part.startswith("{")), (method, path)


def test_operations_that_need_a_token_say_so() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            security = op.get("security", doc["security"])
            if security:
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_served_without_a_token_on_a_relay_that_needs_one(hostile: Hostile) -> None:
    response = requests.get(hostile.relay.url + PATH, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert response.json() == document()
    assert requests.get(hostile.relay.url + "/info", timeout=10).status_code == 401  # while the API needs one
