"""Logging in to the web UI (KEEL_AUTH=on) in a real browser: form, session, approve, logout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui._authworld import AuthWorld, auth_server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    with auth_server(tmp_path_factory.mktemp("ui-login")) as w:
        yield w


@pytest.fixture
def login_page(browser: Any, world: AuthWorld) -> Iterator[Any]:
    context = browser.new_context(base_url=world.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(30_000)
    expect.set_options(timeout=20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"browser errors: {errors}"


def test_login_form_approve_as_the_user_and_logout(
    login_page: Any, world: AuthWorld, shots: Path
) -> None:
    page = login_page
    req = world.new_request()
    page.goto("/ui/approvals")
    expect(page).to_have_url(f"{world.url}/ui/login?next=%2Fui%2Fapprovals")
    expect(page.locator("h1")).to_have_text("Log in to keel")
    expect(page.locator("nav.sections")).to_have_count(0)  # nothing to browse before login

    page.fill("#login-user", "approver")
    page.fill("#login-token", "keel_wrong")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("Invalid user name or token.")
    assert not page.context.cookies()
    expect(page.locator("#login-user")).to_have_value("approver")  # the token is not echoed
    expect(page.locator("#login-token")).to_have_value("")
    page.screenshot(path=str(shots / "login.png"))

    page.fill("#login-token", world.tokens["approver"])
    page.click("#login-submit")
    expect(page).to_have_url(f"{world.url}/ui/approvals")
    expect(page.locator("#whoami")).to_have_text("approver")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "keel_session" and cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts

    row = page.locator(f"#request-{req}")
    row.locator("input[name=comment]").fill("ok from the browser")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator("body")).to_contain_text(f"Request {req} approved by approver.")
    events = world.store().registry.audit_events("model_version:churn")
    assert [e.actor for e in events if e.action == "approval.approve"][-1] == "approver"

    page.click("#logout")
    expect(page).to_have_url(f"{world.url}/ui/login")
    page.goto("/ui/experiments")
    expect(page.locator("h1")).to_have_text("Log in to keel")
