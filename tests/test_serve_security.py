"""Who may change the adapters of `xft serve`, and from where: the admin token, loopback trust, adapter roots,
what listings and errors reveal, and the CLI flags that set them. In process, against a model-free router."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

import httpx
from test_server_protocol import GatedRouter

from xft_core.inference.app import create_app

TOKEN = "correct-horse-battery-staple-42"
ADMIN_CALLS = ("register", "unregister", "replace", "load")


def call(app, requests, *, client=("127.0.0.1", 50000)):
    """Send `requests` [(method, url, kwargs)] to `app` from `client`; the responses, in order."""

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as http:
                return [await http.request(method, url, **kwargs) for method, url, kwargs in requests]

    return asyncio.run(main())


def admin_calls(router):
    return [call for call in router.log if call[0] in ADMIN_CALLS]


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "adapters"
    (root / "fr").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "escape").symlink_to(tmp_path / "outside")
    return root


def test_without_a_token_off_loopback_adapter_administration_is_off_and_says_how_to_turn_it_on(roots):
    router = GatedRouter()
    app = create_app(router, adapter_roots=[roots])  # as `xft serve --host 0.0.0.0` without a token
    put, delete, listing, predict = call(app, [
        ("PUT", "/v1/adapters/fr", {"json": {"path": str(roots / "fr")}}),
        ("DELETE", "/v1/adapters/en", {}),
        ("GET", "/v1/adapters", {}),
        ("POST", "/v1/predict", {"json": {"text": "hello", "language": "en"}}),
    ])
    for response in (put, delete):
        assert response.status_code == 403, response.text
        assert "XFT_ADMIN_TOKEN" in response.json()["detail"] and "--admin-token" in response.json()["detail"]
    assert admin_calls(router) == [], "a refused request never reaches the router"
    assert listing.status_code == 200 and {a["path"] for a in listing.json()["adapters"].values()} == {None}
    assert predict.status_code == 200, "predictions need no credentials"


def test_the_admin_token_is_required_and_compared_in_constant_time(roots, monkeypatch):
    import xft_core.inference.security as security

    compared = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    router = GatedRouter()
    router.folders["en"] = roots / "fr"  # one package inside the roots, the others outside them
    app = create_app(router, admin_token=TOKEN, trust_loopback=True, adapter_roots=[roots])
    good = {"Authorization": f"Bearer {TOKEN}"}
    body = {"json": {"path": str(roots / "fr")}}
    none, wrong, basic, prefix, right, anonymous, listed, misled = call(app, [
        ("PUT", "/v1/adapters/fr", body),
        ("PUT", "/v1/adapters/fr", {**body, "headers": {"Authorization": "Bearer wrong-token-of-some-length"}}),
        ("PUT", "/v1/adapters/fr", {**body, "headers": {"Authorization": f"Basic {TOKEN}"}}),
        ("DELETE", "/v1/adapters/de", {"headers": {"Authorization": f"Bearer {TOKEN[:-1]}"}}),
        ("PUT", "/v1/adapters/fr", {**body, "headers": good}),
        ("GET", "/v1/adapters", {}),
        ("GET", "/v1/adapters", {"headers": good}),
        ("GET", "/v1/adapters", {"headers": {"Authorization": "Bearer nope"}}),
    ])
    for response in (none, wrong, basic, prefix, misled):
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer"), response.text
    assert right.status_code == 200 and right.json()["path"] == str(roots / "fr")
    assert [c[:2] for c in admin_calls(router)] == [("register", "fr"), ("load", "fr")], "only the right token got through"
    assert compared and all(len(a) == len(b) == 32 for a, b in compared), "digests of equal length, compared by hmac"
    assert {name: a["path"] for name, a in anonymous.json()["adapters"].items()} == {"de": None, "en": None, "fr": None}
    shown = {name: a["path"] for name, a in listed.json()["adapters"].items()}
    assert shown == {"de": None, "en": str(roots / "fr"), "fr": str(roots / "fr")}, "no absolute path outside the roots"


def test_loopback_trust_stops_at_remote_clients_and_proxies(roots):
    router = GatedRouter()
    app = create_app(router, trust_loopback=True, adapter_roots=[roots])
    (remote,) = call(app, [("DELETE", "/v1/adapters/de", {})], client=("10.1.2.3", 4000))
    proxied, forwarded, local = call(app, [
        ("DELETE", "/v1/adapters/de", {"headers": {"X-Forwarded-For": "203.0.113.9"}}),
        ("DELETE", "/v1/adapters/de", {"headers": {"Forwarded": "for=203.0.113.9"}}),
        ("DELETE", "/v1/adapters/de", {}),
    ])
    assert remote.status_code == 403 and "loopback clients only" in remote.json()["detail"]
    assert proxied.status_code == forwarded.status_code == 403 and "proxy" in proxied.json()["detail"]
    assert local.status_code == 200 and admin_calls(router) == [("unregister", "de")]


def test_put_outside_the_roots_gets_one_answer_whether_the_path_exists_or_not(roots, tmp_path):
    router = GatedRouter()
    app = create_app(router, trust_loopback=True, adapter_roots=[roots])
    outside = [tmp_path / "outside", tmp_path / "no-such-folder", roots / ".." / "outside", roots / "escape",
               roots / "escape" / "deeper", roots / "nope" / ".." / ".." / "outside", Path("/etc"), Path("/proc/self")]
    responses = call(app, [("PUT", "/v1/adapters/fr", {"json": {"path": str(path)}}) for path in outside])
    assert {r.status_code for r in responses} == {403}
    assert len({r.json()["detail"] for r in responses}) == 1, "the answer must not depend on the path"
    assert str(tmp_path / "outside") not in responses[0].json()["detail"]
    relative, tilde, missing, bad_name = call(app, [
        ("PUT", "/v1/adapters/fr", {"json": {"path": "adapters/fr"}}),
        ("PUT", "/v1/adapters/fr", {"json": {"path": "~/adapters/fr"}}),
        ("PUT", "/v1/adapters/fr", {"json": {"path": str(roots / "missing")}}),
        ("PUT", "/v1/adapters/fr.v2", {"json": {"path": str(roots / "fr")}}),
    ])
    assert relative.status_code == tilde.status_code == 400 and "absolute" in tilde.json()["detail"]
    assert missing.status_code == 400 and "does not exist" in missing.json()["detail"], "inside the roots it may say"
    assert bad_name.status_code == 400 and "adapter name" in bad_name.json()["detail"]
    assert admin_calls(router) == []


def test_deleting_the_fallback_adapter_is_a_conflict():
    router = GatedRouter(fallback="en")
    app = create_app(router, trust_loopback=True)
    (response,) = call(app, [("DELETE", "/v1/adapters/en", {})])
    assert response.status_code == 409 and "fallback" in response.json()["detail"]
    assert "en" in router.registered()


def test_a_short_admin_token_is_refused():
    with pytest.raises(ValueError, match="at least 16"):
        create_app(GatedRouter(), admin_token="short")


@pytest.mark.parametrize("token", [" " * 20, "\t" * 16 + "\n", "a-long-enough-token\n", "  a-long-enough-token"])
def test_an_admin_token_of_whitespace_or_ending_in_it_is_refused(token):
    """All whitespace passed the length check, and no client could ever send it in a Bearer header (the server
    strips the header); a space inside a token is sent and compared as it is, and stays allowed."""
    with pytest.raises(ValueError, match="empty or starts or ends with whitespace"):
        create_app(GatedRouter(), admin_token=token)
    assert create_app(GatedRouter(), admin_token="correct horse battery staple").state.access.token_required


def test_the_cli_flags_set_token_roots_and_loopback_trust(tmp_path, monkeypatch, capsys):
    import uvicorn

    import xft_core.cli.serve as serve
    from xft_core.cli.main import main

    apps = []
    monkeypatch.setattr(serve, "build_router", lambda *args, **kwargs: GatedRouter())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append((app, kwargs)))
    monkeypatch.delenv("XFT_ADMIN_TOKEN", raising=False)
    target = tmp_path / "run"
    target.mkdir()
    assert main(["serve", str(target)]) == 0
    assert main(["serve", str(target), "--host", "0.0.0.0", "--adapter-root", str(tmp_path), "--adapter-root", "/srv"]) == 0
    monkeypatch.setenv("XFT_ADMIN_TOKEN", TOKEN)
    assert main(["serve", str(target), "--host", "::"]) == 0
    (loopback, _), (exposed, kwargs), (tokened, _) = apps
    assert loopback.state.access.trust_loopback and not loopback.state.access.token_required
    assert loopback.state.access.roots == [Path(os.path.realpath(target))], "default root: the folder being served"
    assert not exposed.state.access.trust_loopback
    assert exposed.state.access.roots == [Path(os.path.realpath(tmp_path)), Path("/srv")]
    assert kwargs["host"] == "0.0.0.0" and kwargs["timeout_graceful_shutdown"] == 30
    assert tokened.state.access.token_required, "XFT_ADMIN_TOKEN is read"
    assert "adapter administration: off" in capsys.readouterr().err
    assert main(["serve", str(target), "--admin-token", "short"]) == 2, "a short token fails before the model loads"
    assert "at least 16" in capsys.readouterr().err and len(apps) == 3
