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


@pytest.fixture(scope="module")
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
    # overall A, strength clear; helpful A, honest B, harmless tie; harm 2 (bias) by the sequence m, 2
    for key in ("1", "8", "q", "s", "c", "m", "2"):
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
        "harms": ["bias"],
    }
    assert dialogs == []

    other = store.next_task("p", "ann2")  # ann2 reports a task: it waits in the admins' review queue
    store.flag("ann2", other.id, "Response B stops mid-sentence <b>")

    admin = browser.new_page(viewport={"width": 1200, "height": 900})
    _login(admin, url, "lead")
    admin.goto(url + "/p/p/admin")
    assert admin.text_content('#annotators tr[data-name="ann1"] .judged') == "1"
    assert admin.text_content("#n-judgments") == "1"
    assert "Response B stops mid-sentence <b>" in admin.text_content("#review .reason")  # as text
    if SHOTS:
        admin.screenshot(path=str(Path(SHOTS) / "web_admin.png"), full_page=True)
    admin.click("#review button[data-action=dismiss]")  # the queue's buttons work from the page
    admin.wait_for_load_state()
    sync_api.expect(admin.locator("#review article")).to_have_count(0)
    assert store.flags("p") == []


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


RULES = [f"rule_{i:02d}" for i in range(1, 12)]  # 11 rules: 1..9, then letter keys a, b
OPTIONS = [f"option {i}" for i in range(1, 12)]  # a multiple-choice question with 11 options
TYPE_CASES = {
    # case: task type, stage payload, responses, keys to press (after "/" text is typed), expected answer
    "review_completion": (
        "review_completion",
        {},
        ["a fine completion"],
        ["2", "/", "End", " (edited)"],
        {"decision": "edit", "edited_text": "a fine completion (edited)"},
    ),
    "verify_prompt": ("verify_prompt", {}, [], ["1"], {"accept": True}),
    "verify_prompt_reject": ("verify_prompt", {}, [], ["2", "/", "off topic"], {"accept": False, "reason": "off topic"}),
    "write_prompt": ("write_prompt", {}, [], ["/", "Write a haiku about tea."], {"text": "Write a haiku about tea."}),
    "write_completion": (
        "write_completion",
        {},
        [],
        ["/", "Tea steams; the cup waits.", "Tab", "Control+a", "coding"],
        {"text": "Tea steams; the cup waits.", "domain": "coding"},
    ),
    "rank": ("rank", {}, ["first", "second", "third"], ["3", "ArrowUp", "ArrowUp", "2", "ArrowDown"], {"order": [2, 1, 0]}),
    "rate": ("rate", {"scale": [1, 5]}, ["a response"], ["4"], {"score": 4}),
    "rate_0_10": ("rate", {"scale": [0, 10]}, ["a response"], ["1", "0"], {"score": 10}),
    "binary": ("binary", {}, ["a response"], ["2"], {"good": False}),
    "rules": (
        "rules",
        {"rules": RULES},
        ["a response"],
        ["2", "b"],  # rule 2, and rule 11 (key b)
        {"violations": {r: r in ("rule_02", "rule_11") for r in RULES}},
    ),
    "qa": (
        "qa",
        {
            "questions": [
                {"id": "which", "text": "Which option?", "options": OPTIONS},
                {"id": "sure", "text": "How sure?", "options": ["low", "mid", "high"]},
                {"id": "why", "text": "Why?"},
            ]
        },
        ["a response"],
        ["a", "b", "b", "3", "/", "it says so"],  # question a, option 11 (b); question b, option 3
        {"answers": {"which": "option 11", "sure": "high", "why": "it says so"}},
    ),
}


def _one_task_project(live, name: str, task_type: str, payload: dict, responses: list[str], **stage) -> tuple[int, list[int]]:
    store = live["store"]
    stage_cfg = StageConfig(name="s", task_type=task_type, overlap=1, payload=payload, role="annotator", **stage)
    store.create_project(name, ProjectConfig(stages=[stage_cfg]))
    from alignkit.web.accounts import create_account

    create_account(store, f"u_{name}", PASSWORD, project=name, status="active")
    pid = store.add_prompt(name, "Prompt text", status="accepted")
    rids = [store.add_response(pid, r) for r in responses]
    return pid, rids


def _open_task(page, live, name: str) -> None:
    _login(page, live["url"], f"u_{name}")
    page.goto(f"{live['url']}/p/{name}")
    page.focus("#start")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/{name}/task/*")


@pytest.mark.parametrize("case", list(TYPE_CASES))
def test_each_task_type_with_the_keyboard_only(live, browser, case):
    """Every task type, every choice made with keys (no clicks, no focusing by the test)."""
    store = live["store"]
    task_type, payload, responses, keys, expected = TYPE_CASES[case]
    pid, rids = _one_task_project(live, case, task_type, payload, responses)
    store.add_task(case, "s", pid if task_type != "write_prompt" else None, rids)
    page = browser.new_page()
    _open_task(page, live, case)
    typing = False
    for key in keys:
        if key == "/":
            page.keyboard.press("/")
            typing = True
        elif typing and len(key) > 1 and key not in ("End", "Tab", "Control+a"):
            page.keyboard.type(key)
        else:
            page.keyboard.press(key)
    page.keyboard.press("Control+Enter" if typing else "Enter")
    page.wait_for_url(f"{live['url']}/p/{case}?m=done")
    [j] = store.judgments(case)
    assert j.answer == expected
    page.close()


def test_rank_by_dragging(live, browser):
    store = live["store"]
    pid, rids = _one_task_project(live, "drag", "rank", {}, ["first", "second", "third", "fourth"])
    store.add_task("drag", "s", pid, rids)
    page = browser.new_page()
    _open_task(page, live, "drag")
    page.drag_and_drop("#rank li:nth-child(1)", "#rank li:nth-child(3)")  # first moves down to third place
    page.drag_and_drop("#rank li:nth-child(4)", "#rank li:nth-child(1)")  # fourth moves up to first place
    assert [t.strip() for t in page.locator("#rank li").all_text_contents()] == ["fourth", "second", "third", "first"]
    sync_api.expect(page.locator("#status")).to_have_text("draft saved")
    page.reload()  # the dragged order is in the draft
    assert [t.strip() for t in page.locator("#rank li").all_text_contents()] == ["fourth", "second", "third", "first"]
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/drag?m=done")
    [j] = store.judgments("drag")
    assert j.answer == {"order": [3, 1, 2, 0]}
    page.close()


def test_model_prelabel_is_prefilled_marked_and_escaped(live, browser):
    store = live["store"]
    evil = "</script><img src=x onerror=alert(1)> fixed"
    pid, rids = _one_task_project(live, "sugg", "review_completion", {}, ["draft text"], show_prelabels=True)
    store.add_task("sugg", "s", pid, rids, prelabel={"decision": "edit", "edited_text": evil})
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _open_task(page, live, "sugg")
    assert "model's suggestion" in page.text_content("#suggestion-note")
    assert page.is_checked('input[name="decision"][value="edit"]')
    assert page.input_value('textarea[name="edited_text"]') == evil
    marked = page.locator("label.suggested, textarea.suggested")
    assert marked.count() == 2  # the chosen decision and the edited text are marked
    assert page.locator("main img").count() == 0
    page.keyboard.press("1")  # the annotator overrides the suggestion: accept
    sync_api.expect(page.locator("#status")).to_have_text("draft saved")
    page.reload()  # a draft wins over the suggestion
    assert page.is_checked('input[name="decision"][value="accept"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live['url']}/p/sugg?m=done")
    [j] = store.judgments("sugg")
    assert j.answer == {"decision": "accept"} and dialogs == []
    page.close()
