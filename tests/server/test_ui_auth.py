"""The web UI with access control on: login, sessions, roles, CSRF, against a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.ui._authworld import AuthWorld, auth_server

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_server(tmp_path_factory.mktemp("ui-auth")) as w:
        yield w


def _browser(world: AuthWorld) -> httpx.Client:
    return httpx.Client(base_url=world.url, timeout=30)


def _login(world: AuthWorld, user: str) -> httpx.Client:
    ui = _browser(world)
    answer = ui.post("/ui/login", data={"user": user, "token": world.tokens[user]})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/experiments"
    return ui


def _csrf(ui: httpx.Client, page: str = "/ui/approvals") -> str:
    found = CSRF.search(ui.get(page).text)
    assert found is not None
    return found.group(1)


def _state(world: AuthWorld, req_id: int) -> tuple[str, list[str]]:
    reg = world.store().registry
    req = next(r for r in reg.list_requests("churn", None) if r.id == req_id)
    return req.status, [str(v.get("user")) for v in req.votes]


def test_pages_without_a_session_redirect_to_the_login_form(world: AuthWorld) -> None:
    ui = _browser(world)
    for page in ("/ui/experiments", f"/ui/runs/{world.run_a}", "/ui/approvals", "/ui/audit"):
        answer = ui.get(page, params={"x": "1"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login?next=")
        assert "x%3D1" in answer.headers["location"]
    partial = ui.get("/ui/experiments", headers={"HX-Request": "true"})
    assert partial.status_code == 401
    assert partial.headers["HX-Redirect"].startswith("/ui/login?next=")
    form = ui.get("/ui/login", params={"next": "/ui/audit"})
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'value="/ui/audit"' in form.text
    assert ui.get("/ui/static/app.css").status_code == 200  # assets need no session
    # the API is unchanged: a token, not the cookie
    assert ui.get("/api/v1/experiments").status_code == 401


def test_a_wrong_user_or_token_gets_one_uniform_error_and_no_cookie(world: AuthWorld) -> None:
    wrong = [
        {"user": "reader", "token": "keel_not-a-token"},
        {"user": "reader", "token": world.tokens["approver"]},  # a real token of someone else
        {"user": "nobody", "token": world.tokens["reader"]},
        {"user": "", "token": ""},
    ]
    bodies = []
    for data in wrong:
        ui = _browser(world)
        answer = ui.post("/ui/login", data=data)
        assert answer.status_code == 401
        assert "set-cookie" not in answer.headers
        assert not ui.cookies
        found = re.search(r'id="login-error">([^<]*)<', answer.text)
        assert found is not None
        bodies.append(found.group(1))
    assert set(bodies) == {"Invalid user name or token."}
    # a login form posted from another site is refused before anything is checked
    cross = _browser(world).post(
        "/ui/login",
        data={"user": "reader", "token": world.tokens["reader"]},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "set-cookie" not in cross.headers


def test_login_issues_a_hashed_short_lived_session_token_in_a_strict_cookie(
    world: AuthWorld,
) -> None:
    ui = _browser(world)
    answer = ui.post(
        "/ui/login",
        data={"user": "reader", "token": world.tokens["reader"], "next": "/ui/audit"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/audit"
    cookie = answer.headers["set-cookie"].lower()
    for part in ("httponly", "samesite=strict", "path=/ui", "max-age=43200"):
        assert part in cookie
    assert "secure" not in cookie  # plain http here; https requests get Secure
    session = ui.cookies["keel_session"]
    assert session != world.tokens["reader"]
    made = [t for t in world.store().auth.tokens("reader") if t.label == "ui-session"]
    assert made and made[-1].expires_at is not None
    assert made[-1].expires_at - made[-1].created_at == 12 * 3600 * 1000
    page = ui.get("/ui/experiments")
    assert page.status_code == 200
    assert 'id="whoami">reader<' in page.text and 'id="logout"' in page.text
    assert "team-a" in page.text and "team-b" in page.text
    # an offsite "next" never leaves the UI
    other = _browser(world).post(
        "/ui/login",
        data={"user": "reader", "token": world.tokens["reader"], "next": "//evil.example/x"},
    )
    assert other.headers["location"] == "/ui/experiments"


def test_a_reader_cannot_approve_and_nothing_changes(world: AuthWorld) -> None:
    req = world.new_request()
    ui = _login(world, "reader")
    token = _csrf(ui)
    answer = ui.post(f"/ui/approvals/{req}/approve", data={"csrf": token, "comment": "x"})
    assert answer.status_code == 403
    assert "reader may not do this" in answer.text
    assert _state(world, req) == ("pending", [])


def test_an_approver_approves_through_the_ui_as_itself(world: AuthWorld) -> None:
    req = world.new_request()
    ui = _login(world, "approver")
    page = ui.get("/ui/approvals")
    assert f'id="request-{req}"' in page.text
    answer = ui.post(
        f"/ui/approvals/{req}/approve", data={"csrf": _csrf(ui), "comment": "looks good"}
    )
    assert answer.status_code == 303, answer.text
    done = ui.get(answer.headers["location"])
    assert f"Request {req} approved by approver." in done.text
    status, voters = _state(world, req)
    assert status != "pending" and voters == ["approver"]
    events = world.store().registry.audit_events("model_version:churn")
    approve = [e for e in events if e.action == "approval.approve"]
    assert approve and approve[-1].actor == "approver"
    assert all(e.actor != "keel-server" for e in events)  # never the server's KEEL_USER


def test_a_missing_or_wrong_csrf_token_or_foreign_origin_is_refused(world: AuthWorld) -> None:
    req = world.new_request()
    ui = _login(world, "approver")
    token = _csrf(ui)
    refused = [
        ui.post(f"/ui/approvals/{req}/approve", data={"comment": "x"}),
        ui.post(f"/ui/approvals/{req}/approve", data={"csrf": "0" * 64}),
        ui.post(f"/ui/approvals/{req}/approve", headers={"X-CSRF-Token": "f" * 64}),
        ui.post(
            f"/ui/approvals/{req}/approve",
            data={"csrf": token},
            headers={"Origin": "https://evil.example"},
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert _state(world, req) == ("pending", [])
    # another session's token does not fit this one
    other = _login(world, "approver")
    assert _csrf(other) != token
    wrong = other.post(f"/ui/approvals/{req}/reject", data={"csrf": token})
    assert wrong.status_code == 403
    assert _state(world, req) == ("pending", [])
    # the htmx header carries the token too
    ok = ui.post(f"/ui/approvals/{req}/reject", headers={"X-CSRF-Token": token})
    assert ok.status_code == 303
    assert _state(world, req) == ("rejected", ["approver"])


def test_logout_revokes_the_session(world: AuthWorld) -> None:
    ui = _login(world, "reader")
    session = ui.cookies["keel_session"]
    answer = ui.post("/ui/logout", data={"csrf": _csrf(ui, "/ui/experiments")})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert 'keel_session=""' in answer.headers["set-cookie"] or "max-age=0" in (
        answer.headers["set-cookie"].lower()
    )
    stale = _browser(world)
    stale.cookies.set("keel_session", session, domain="127.0.0.1", path="/ui")
    assert stale.get("/ui/experiments").status_code == 303
    revoked = [t for t in world.store().auth.tokens("reader") if t.label == "ui-session"]
    assert any(t.revoked_at is not None for t in revoked)
    # the reader's own API token is untouched
    api = httpx.get(
        world.url + "/api/v1/experiments",
        headers={"Authorization": f"Bearer {world.tokens['reader']}"},
    )
    assert api.status_code == 200


def test_revoking_the_session_token_in_the_store_ends_the_session_at_once(
    world: AuthWorld,
) -> None:
    ui = _login(world, "temp")
    assert ui.get("/ui/experiments").status_code == 200
    store = world.store()
    for token in store.auth.tokens("temp"):
        if token.label == "ui-session" and token.revoked_at is None:
            store.auth.revoke_token(token.id, actor="admin")
    assert ui.get("/ui/experiments").status_code == 303
    htmx = ui.get("/ui/experiments", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and "HX-Redirect" in htmx.headers


def test_a_reader_of_one_experiment_sees_only_it(world: AuthWorld) -> None:
    ui = _login(world, "scoped")
    listing = ui.get("/ui/experiments")
    assert listing.status_code == 200
    assert "team-a" in listing.text and "team-b" not in listing.text
    assert ui.get(f"/ui/experiments/{world.exp_a}").status_code == 200
    assert ui.get(f"/ui/runs/{world.run_a}").status_code == 200
    forbidden = ui.get(f"/ui/experiments/{world.exp_b}")
    missing = ui.get("/ui/experiments/987654")
    assert forbidden.status_code == missing.status_code == 403
    assert forbidden.text == missing.text  # nothing tells whether B exists
    run_b, run_missing = ui.get(f"/ui/runs/{world.run_b}"), ui.get(f"/ui/runs/{'f' * 32}")
    assert run_b.status_code == run_missing.status_code == 403
    assert run_b.text == run_missing.text
    assert "team-b" not in forbidden.text and "team-b" not in run_b.text
    compare = ui.get("/ui/compare", params={"run": [world.run_a, world.run_b]})
    assert compare.status_code == 403
    assert ui.get("/ui/audit").status_code == 403  # across every object: a global role
