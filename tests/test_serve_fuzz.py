"""Fuzzing what `xft serve` parses: random JSON, wrong types, huge and empty values, odd Unicode (lone surrogates,
NULs, private use), raw bytes, odd headers. Every answer must be a success or a 4xx with a JSON `detail`: never a
5xx, never a traceback. A model-free `RouterLike` stands in for the router; hypothesis runs derandomized, so a
failure reproduces on every machine."""

from __future__ import annotations

import json
import urllib.parse

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_server_protocol import GatedRouter  # noqa: E402

from xft_core.inference.app import create_app  # noqa: E402

TOKEN = "fuzzing-token-0123456789abcdef"
FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# text that tokenizers and JSON encoders trip on: lone surrogates, NUL, BOM, private use, the last code point
ODD = ["\ud800", "\udfff", "a\udc80b", "\x00", "\ufeff", "\ue000", "\U0010ffff", "\u202e", "𝔘𝔫𝔦", "", " ", "\n"]
text = st.one_of(st.text(max_size=40), st.sampled_from(ODD), st.text(st.characters(codec=None, categories=["Cs", "Co"]),
                                                                      max_size=5),
                 st.sampled_from(["a" * 5000, "é" * 300, "auto", "en", "__base__", "boom"]))
scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                   st.floats(allow_nan=True, allow_infinity=True), text,
                   st.sampled_from([10**400, -(10**400), 1e308, 5e-324]))
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                          max_leaves=12)
row = st.one_of(json_value, st.fixed_dictionaries({}, optional={"text": json_value, "language": json_value, "x": json_value}))
predict_body = st.one_of(
    json_value,
    st.fixed_dictionaries({}, optional={"text": json_value, "language": json_value, "inputs": st.lists(row, max_size=6),
                                        "extra": json_value}),
    st.fixed_dictionaries({"inputs": st.lists(st.fixed_dictionaries({"text": text}, optional={"language": text}),
                                              max_size=300)}),
)
adapter_body = st.one_of(json_value, st.fixed_dictionaries({}, optional={"path": json_value, "pin": json_value}))
header_value = st.binary(max_size=40).filter(lambda b: not set(b) & {0, 10, 13})
content_type = st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"application/json; charset=latin-1",
                                b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                                b"", b"application/json\xff", b"*/*"])


def encode(value) -> bytes:
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()  # "\ud800" goes out as the JSON escape


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("fuzz-adapters")
    (root / "fr").mkdir()
    app = create_app(GatedRouter(capacity=4), max_wait_ms=0, max_request_rows=256, max_text_chars=4096,
                     max_body_bytes=200_000, admin_token=TOKEN, adapter_roots=[root])
    with TestClient(app, raise_server_exceptions=True, client=("127.0.0.1", 50000)) as test_client:
        test_client.root = root
        yield test_client


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.headers
        assert "detail" in response.json(), response.text[:500]
        assert "Traceback" not in response.text


@FUZZ
@given(body=predict_body)
def test_predict_parses_any_json_into_an_answer_or_a_4xx(client, body):
    check(client.post("/v1/predict", content=encode(body), headers={"content-type": "application/json"}))


@FUZZ
@given(body=st.one_of(predict_body.map(encode), st.binary(max_size=300)), kind=content_type)
def test_predict_parses_any_bytes_and_content_type_into_an_answer_or_a_4xx(client, body, kind):
    check(client.post("/v1/predict", content=body, headers={"content-type": kind}))


@FUZZ
@given(name=st.one_of(text, st.sampled_from(["fr", "fr", "%ED%A0%80", "%FF", "..", "a" * 100, "__base__", "de", "fr%2F..%2Fx"])),
       body=adapter_body, inside=st.sampled_from([None, "fr", "fr", "missing", "../fr", "fr/../../etc"]),
       pin=st.one_of(st.none(), st.booleans(), json_value), method=st.sampled_from(["PUT", "PUT", "DELETE", "GET", "POST"]),
       authorization=st.one_of(st.none(), st.none(), st.none(), header_value))
def test_adapter_admin_parses_anything_into_an_answer_or_a_4xx(client, name, body, inside, pin, method, authorization):
    if inside is not None:  # a well-formed body with a path near or inside the root, to reach the router too
        body = {"path": str(client.root / inside), "pin": pin}
    quoted = name if "%" in name else urllib.parse.quote(name.encode("utf-8", "surrogatepass"), safe="")
    headers = {"content-type": "application/json",
               "authorization": authorization if authorization is not None else f"Bearer {TOKEN}".encode()}
    url = f"/v1/adapters/{quoted}" if method != "GET" else "/v1/adapters"
    check(client.request(method, url, content=encode(body), headers=headers))


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["content-type", "content-length", "authorization", "accept", "x-forwarded-for",
                                                "transfer-encoding", "content-encoding", "host"]), header_value, max_size=4))
def test_odd_headers_get_an_answer_or_a_4xx(client, headers):
    headers = {k: v for k, v in headers.items() if k not in ("content-length", "transfer-encoding", "host")}
    check(client.post("/v1/predict", content=encode({"text": "hello", "language": "en"}), headers=headers))
    check(client.get("/v1/adapters", headers=headers))
    check(client.get("/healthz", headers=headers))


def test_the_fuzzed_server_still_answers(client):
    response = client.post("/v1/predict", json={"inputs": [{"text": "still here", "language": "en"}]})
    assert response.status_code == 200 and response.json()["predictions"][0]["text"] == "still here"
