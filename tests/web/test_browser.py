"""Real-browser tests: Debian's headless Chromium driven by Playwright's Python package (pointed at
/usr/bin/chromium; nothing downloads a browser). Skipped when either is missing.

Set ALIGNKIT_SCREENSHOTS=docs to (re)write docs/web_compare.png and docs/web_admin.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from alignkit.feedback.config import ProjectConfig, StageConfig
from tests.web.conftest import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
SHOTS = os.environ.get("ALIGNKIT_SCREENSHOTS")


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _login(page, url: str, name: str) -> None:
    page.goto(url + "/login")
    page.focus("#name")  # it has autofocus; focus it explicitly so typing does not race the page load
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(url + "/")


def test_compare_with_the_keyboard_draft_survives_refresh_admin_sees_it(live, browser):
    url, store = live["url"], live["store"]
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _login(page, url, "ann1")
    page.goto(url + "/p/p")
    page.focus("#start")  # it has autofocus; focus it explicitly so the test does not race the page load
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/p/p/task/*")
    task_url = page.url
    for key in ("1", "8", "q", "s", "c"):  # overall A, strength clear; helpful A, honest B, harmless tie
        page.keyboard.press(key)
    page.keyboard.press("/")  # into the rationale
    page.keyboard.type("A answers the question.")
    page.keyboard.press("Escape")
    sync_api.expect(page.locator("#status")).to_have_text("draft saved")
    page.reload()
    assert page.is_checked('input[name="overall"][value="A"]')
    assert page.is_checked('input[name="criteria.honest"][value="B"]')
    assert page.input_value('textarea[name="rationale"]') == "A answers the question."
    assert page.text_content("#status") == "draft restored"
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "web_compare.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: u != task_url)
    [j] = store.judgments("p")
    assert j.annotator == "ann1" and j.answer == {
        "overall": "A",
        "strength": 2,
        "rationale": "A answers the question.",
        "criteria": {"helpful": "A", "honest": "B", "harmless": "tie"},
        "harms": [],
    }
    assert dialogs == []

    admin = browser.new_page(viewport={"width": 1200, "height": 900})
    _login(admin, url, "lead")
    admin.goto(url + "/p/p/admin")
    assert admin.text_content('#annotators tr[data-name="ann1"] .judged') == "1"
    assert admin.text_content("#n-judgments") == "1"
    if SHOTS:
        admin.screenshot(path=str(Path(SHOTS) / "web_admin.png"), full_page=True)


def test_script_and_onerror_in_a_response_render_as_text(live, browser):
    store = live["store"]
    evil_a, evil_b = "<script>alert('x')</script>", '"><img src=x onerror=alert(1)>'
    pid = store.add_prompt("p", "Say hi " + evil_b, status="accepted")
    ids = [store.add_response(pid, evil_a), store.add_response(pid, evil_b)]
    tid = store.add_task("p", "cmp", pid, ids)
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _login(page, live["url"], "ann2")
    page.goto(live["url"] + "/p/p")
    page.focus("#start")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/p/task/*")
    while not page.url.endswith(f"/task/{tid}"):
        here = page.url
        page.keyboard.press("p")  # skip until the planted task comes up (the next one opens by itself)
        page.wait_for_url(lambda u, here=here: u != here)
    assert page.text_content("#response-a") == evil_a
    assert page.text_content("#response-b") == evil_b
    assert evil_b in page.text_content("#prompt-text")
    assert page.locator("main img").count() == 0 and page.locator('main script:not([type="application/json"])').count() == 0
    page.wait_for_timeout(300)
    assert dialogs == []


TYPE_CASES = {
    # task type, stage payload, responses, keys to press (after "/" the text is typed), expected answer
    "review_completion": (
        {},
        ["a fine completion"],
        ["2", "/", "End", " (edited)"],
        {"decision": "edit", "edited_text": "a fine completion (edited)"},
    ),
    "verify_prompt": ({}, [], ["1"], {"accept": True}),
    "write_prompt": ({}, [], ["/", "Write a haiku about tea."], {"text": "Write a haiku about tea."}),
    "write_completion": (
        {},
        [],
        ["/", "Tea steams; the cup waits."],
        {"text": "Tea steams; the cup waits.", "domain": "general"},
    ),
    "rank": ({}, ["first", "second", "third"], ["Tab-rank", "ArrowDown"], {"order": [1, 0, 2]}),
    "rate": ({"scale": [1, 5]}, ["a response"], ["4"], {"score": 4}),
    "binary": ({}, ["a response"], ["2"], {"good": False}),
    "rules": (
        {"rules": ["no_insults", "cites_sources"]},
        ["a response"],
        ["2"],
        {"violations": {"no_insults": False, "cites_sources": True}},
    ),
}


@pytest.mark.parametrize("task_type", list(TYPE_CASES))
def test_each_task_type_with_the_keyboard(live, browser, task_type):
    store = live["store"]
    payload, responses, keys, expected = TYPE_CASES[task_type]
    name = f"t_{task_type}"
    store.create_project(
        name, ProjectConfig(stages=[StageConfig(name="s", task_type=task_type, overlap=1, payload=payload, role="annotator")])
    )
    from alignkit.web.accounts import create_account

    create_account(store, f"u_{task_type}", PASSWORD, project=name, status="active")
    pid = store.add_prompt(name, "Prompt text", status="accepted")
    rids = [store.add_response(pid, r) for r in responses]
    store.add_task(name, "s", pid if task_type != "write_prompt" else None, rids)
    page = browser.new_page()
    _login(page, live["url"], f"u_{task_type}")
    page.goto(f"{live['url']}/p/{name}")
    page.focus("#start")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/{name}/task/*")
    typing = False
    for key in keys:
        if key == "/":
            page.keyboard.press("/")
            typing = True
        elif key == "Tab-rank":
            page.focus("#rank li")  # the first item; Tab reaches it as well
        elif typing and len(key) > 1 and key not in ("End",):
            page.keyboard.type(key)
        else:
            page.keyboard.press(key)
    if typing:
        page.keyboard.press("Control+Enter")
    else:
        page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/{name}?m=done")
    [j] = store.judgments(name)
    assert j.answer == expected
