"""The OpenAPI document against the real app: its routes, its answers, and /api/health's
loading message (which the document describes and the page shows)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from app import create_app
from config import ASPECTS, MAX_FRAMES, PRESETS, load_settings
from fakes import FakeGenerator
from openapi import openapi_document

METHODS = {"get", "post", "put", "delete", "patch"}


def make_app(tmp_path, **overrides):
    values = {"data_dir": str(tmp_path), "model": "tiny", "identity_scoring": False, **overrides}
    # No worker: nothing here draws, and a queued board keeps every field of the board JSON.
    return create_app(load_settings({}, values), load_generator=FakeGenerator, start_worker=False)


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def document():
    return openapi_document()


def openapi_path(rule: str) -> str:
    """Flask's ``/a/<board_id>/<int:n>`` as OpenAPI's ``/a/{board_id}/{n}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's own file route for the page's assets, not the studio's API
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((openapi_path(rule.rule), method.lower()))
    return routes


def documented_routes(document) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, item, operation


def resolve(document, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def response_schema(document, path: str, method: str, status: str) -> dict:
    response = document["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = resolve(document, response["$ref"])
    schema = response["content"]["application/json"]["schema"]
    return resolve(document, schema["$ref"]) if "$ref" in schema else schema


# --- The routes -------------------------------------------------------------------------------


def test_path_conversion():
    assert openapi_path("/api/storyboards/<board_id>/frames/<int:n>/regenerate") == \
        "/api/storyboards/{board_id}/frames/{n}/regenerate"


def test_every_route_is_described_and_nothing_else(app, document):
    real, described = app_routes(app), documented_routes(document)
    assert real - described == set(), "routes without a description"
    assert described - real == set(), "descriptions of routes that do not exist"
    assert ("/api/openapi.json", "get") in real


def test_every_path_parameter_is_declared(document):
    for path, method, item, operation in operations(document):
        declared = {p["name"] for p in item.get("parameters", []) + operation.get("parameters", [])
                    if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)


def test_every_reference_resolves(document):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(document, node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def test_operations_have_ids_and_a_success_answer(document):
    ids = [operation["operationId"] for *_, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, _, operation in operations(document):
        assert any(code.startswith("2") for code in operation["responses"]), (path, method)


def test_bodies_and_errors_are_described(document):
    for path, method in [("/api/storyboards", "post"), ("/api/storyboards/{board_id}/order", "put"),
                         ("/api/storyboards/{board_id}/frames/{n}/regenerate", "post")]:
        assert "application/json" in document["paths"][path][method]["requestBody"]["content"]
    assert "multipart/form-data" in document["paths"]["/api/storyboards"]["post"]["requestBody"]["content"]
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "field"]
    for path, method, _, operation in operations(document):
        for code in operation["responses"]:
            if code[0] in "45":
                assert response_schema(document, path, method, code) == error, (path, method, code)


def test_choices_come_from_the_config(document):
    new = document["components"]["schemas"]["NewStoryboard"]["properties"]
    assert new["preset"]["enum"] == list(PRESETS)
    assert new["aspect"]["enum"] == list(ASPECTS)
    assert new["frames"]["maximum"] == MAX_FRAMES


def test_the_document_is_served(client, document):
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == document
    assert answer.get_json()["openapi"].startswith("3.1")


# --- The answers have only documented fields --------------------------------------------------


def documented_fields(document, path, method, status):
    return set(response_schema(document, path, method, status)["properties"])


def test_health_fields_are_documented(client, document):
    assert set(client.get("/api/health").get_json()) == documented_fields(document, "/api/health", "get", "200")


def test_presets_fields_are_documented(client, document):
    answer = client.get("/api/presets").get_json()
    assert set(answer) <= documented_fields(document, "/api/presets", "get", "200")
    preset = document["components"]["schemas"]["Preset"]["properties"]
    assert all(set(p) <= set(preset) for p in answer["presets"])


def test_board_fields_are_documented(client, document):
    created = client.post("/api/storyboards", json={"story": "A girl finds a map.\nShe climbs."})
    assert created.status_code == 202
    board = client.get(f"/api/storyboards/{created.get_json()['id']}").get_json()
    schemas = document["components"]["schemas"]
    assert set(created.get_json()) <= set(schemas["Storyboard"]["properties"])
    assert set(board) <= set(schemas["Storyboard"]["properties"])
    assert set(board["settings"]) <= set(schemas["Settings"]["properties"])
    assert all(set(frame) <= set(schemas["Frame"]["properties"]) for frame in board["frames"])
    summaries = client.get("/api/storyboards").get_json()["storyboards"]
    assert summaries and all(set(s) <= set(schemas["StoryboardSummary"]["properties"]) for s in summaries)


def documented_template(document, url: str) -> str | None:
    """The document's path of which ``url`` (a link in an answer) is one, or None."""
    path = urlsplit(url).path
    for template in document["paths"]:
        if re.fullmatch("[^/]+".join(re.escape(part) for part in re.split(r"{\w+}", template)), path):
            return template
    return None


def test_every_link_in_an_answer_is_documented(client, document):
    """The page builds no URL past the entry points: what the answers link to is the API's."""
    created = client.post("/api/storyboards", json={"story": "A girl finds a map.\nShe climbs."}).get_json()
    board = client.get(created["links"]["self"]).get_json()
    summary = client.get("/api/storyboards").get_json()["storyboards"][0]
    schemas = document["components"]["schemas"]
    for answer, schema in [(created, "Storyboard"), (board, "Storyboard"), (summary, "StoryboardSummary"),
                           *((frame, "Frame") for frame in board["frames"])]:
        assert set(answer["links"]) == set(schemas[schema]["properties"]["links"]["properties"])
        urls = [*answer["links"].values(), *answer.get("export", {}).values()]
        assert [url for url in urls if documented_template(document, url) is None] == []
    assert board["id"] == created["id"] == summary["id"]
    assert documented_template(document, board["frames"][1]["links"]["regenerate"]).endswith("/frames/{n}/regenerate")
    assert board["frames"][1]["links"]["regenerate"].split("/")[-2] == "2"  # by position, as the route takes it


def test_an_error_has_the_documented_shape(client):
    answer = client.post("/api/storyboards", json={"story": ""})
    assert answer.status_code == 400
    assert answer.get_json() == {"error": answer.get_json()["error"], "field": "story"}


# --- What loading the model involves ----------------------------------------------------------


def test_tiny_models_promise_no_download(client):
    message = client.get("/api/health").get_json()["loading_message"]
    assert "tiny" in message and "GB" not in message and "download" not in message


def test_sdxl_says_what_the_first_run_downloads(tmp_path):
    message = make_app(tmp_path, model="sdxl").test_client().get("/api/health").get_json()["loading_message"]
    assert "10 GB" in message and "download" in message
