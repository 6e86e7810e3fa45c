"""Two readers take a 20 real + 20 generated study in headless Chromium (Debian's, driven by Playwright).

`ganforge reader-study serve` runs as users run it; the page is used with the keyboard and the mouse,
reloaded, and taken by a second reader at the same time. Every response the browsers receive is
kept and searched for the key.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import create_study_args

from ganforge.cli import main
from ganforge.reader_study.store import Store
from ganforge.reader_study.study import Study

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as root, offline: no sandbox, no background connections (refused on a closed network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
STATE_KEYS = {
    "reader",
    "title",
    "total",
    "answered",
    "position",
    "done",
    "item",
    "answer",
    "confidence_levels",
    "findings",
    "allow_changes",
}

pytestmark = pytest.mark.slow
if not CHROMIUM.exists():
    # CI installs Chromium (Makefile: browser); there a missing browser is a failure, not a skip.
    pytestmark = [pytestmark, pytest.mark.skipif(not os.environ.get("CI"), reason=f"{CHROMIUM} not installed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_study(tmp_path, phantom_folder, tiny_generator):
    out = tmp_path / "study"
    args = create_study_args(phantom_folder, tiny_generator, 40, out, "--ask-finding", "--seed", 11)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    study = Study.open(out)
    store = Store(study.answers_path)
    codes = {name: store.add_reader(name, study.item_ids, study.manifest.seed) for name in ("alice", "bob")}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ganforge", "reader-study", "serve", str(out), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield study, codes, url
    server.terminate()
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0 and "every answer given is saved" in stderr, stderr


def record_responses(context, bodies: list):
    context.on("response", lambda response: bodies.append((response.url, response.headers, response.body())))


def sign_in(page, url: str, code: str) -> None:
    page.goto(url)
    page.wait_for_selector("#signin-form")
    page.fill("#code", code)
    page.keyboard.press("Enter")
    page.wait_for_selector("#counter:has-text('Image')")


def counter(page) -> str:
    return page.inner_text("#counter")


def answer_with_keys(page, call: str, confidence: int, finding_presses: int) -> None:
    before = counter(page)
    page.keyboard.press(call)
    page.keyboard.press(str(confidence))
    for _ in range(finding_presses):
        page.keyboard.press("f")
    page.keyboard.press("Enter")
    page.wait_for_function("before => document.getElementById('counter').textContent !== before", arg=before)


def canvas_pixels(page) -> list[int]:
    return page.evaluate(
        "() => { const c = document.getElementById('image');"
        " const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " return Array.from(data.filter((_, i) => i % 4 === 0)); }"
    )


def test_two_readers_take_the_study_in_chromium(served_study):
    from playwright.sync_api import sync_playwright

    study, codes, url = served_study
    bodies: list = []
    rng = random.Random(0)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pages = {}
        for name in codes:
            context = browser.new_context(viewport={"width": 1100, "height": 760})
            record_responses(context, bodies)
            pages[name] = context.new_page()
        alice, bob = pages["alice"], pages["bob"]

        alice.goto(url)
        assert alice.is_visible("#signin-form") and not alice.is_visible("#study")
        alice.fill("#code", "WRONG-CODE0")
        alice.keyboard.press("Enter")
        alice.wait_for_selector("#signin-error:has-text('unknown session code')")
        sign_in(alice, url, codes["alice"].lower().replace("-", " "))  # typed loosely
        assert counter(alice) == "Image 1 of 40"
        alice.wait_for_function("() => document.getElementById('image').width === 16")  # full resolution

        alice.keyboard.press("Enter")  # too early: the page says what is missing
        assert alice.inner_text("#answer-error") == "Still to answer: real or generated, confidence, finding"
        # The keyboard: G, confidence 4, F (first finding), Enter.
        alice.keyboard.press("g")
        alice.keyboard.press("4")
        alice.keyboard.press("f")
        assert alice.input_value("#finding") == "Cardiomegaly"
        assert alice.get_attribute("#calls button[data-call=generated]", "aria-pressed") == "true"
        alice.keyboard.press("Enter")
        alice.wait_for_selector("#counter:has-text('Image 2 of 40')")

        # The mouse: Real, confidence 2, a finding from the list, Next (disabled until all are given).
        alice.click("#calls button[data-call=real]")
        assert alice.is_disabled("#next")
        alice.click("#confidence button[data-confidence='2']")
        alice.select_option("#finding", "Nodule")
        alice.click("#next")
        alice.wait_for_selector("#counter:has-text('Image 3 of 40')")

        # Window/level and zoom change what is shown, not what is stored. The counter moves before the
        # next image has loaded: wait for the canvas to show image 3 (position 2), not image 2.
        alice.wait_for_function("() => document.getElementById('image').dataset.position === '2'")
        alice.wait_for_function("() => document.getElementById('image').width === 16")
        plain = canvas_pixels(alice)
        width = alice.evaluate("() => document.getElementById('image').getBoundingClientRect().width")
        for key in ("ArrowLeft",) * 8 + ("ArrowUp",):
            alice.keyboard.press(key)
        narrowed = canvas_pixels(alice)
        low, window = 128 + 8 - 64, 256 - 8 * 16  # level 136, window 128
        expected = [min(255, max(0, (v - low) / window * 255)) for v in plain]
        assert narrowed != plain and all(abs(a - b) <= 1 for a, b in zip(narrowed, expected))
        alice.keyboard.press("+")
        assert alice.evaluate("() => document.getElementById('image').getBoundingClientRect().width") > width
        alice.keyboard.press("w")
        assert canvas_pixels(alice) == plain

        # Bob reads at the same time; Alice reloads and resumes where she was.
        sign_in(bob, url, codes["bob"])
        assert counter(bob) == "Image 1 of 40"
        alice.reload()
        alice.wait_for_selector("#counter:has-text('Image 3 of 40')")

        while not (alice.is_visible("#finished") and bob.is_visible("#finished")):
            for page in (alice, bob):
                if not page.is_visible("#finished"):
                    answer_with_keys(page, rng.choice("rg"), rng.randint(1, 5), rng.randint(1, 5))
        assert counter(alice) == counter(bob) == "40 of 40 answered"
        browser.close()

    with sqlite3.connect(study.answers_path) as db:
        rows = db.execute(
            "SELECT r.name, a.position, a.item, a.call, a.confidence, a.finding FROM answers a"
            " JOIN readers r ON r.id = a.reader_id ORDER BY r.name, a.position"
        ).fetchall()
    assert [row[1:] for row in rows if row[0] == "alice"][:2] == [
        (0, Store(study.answers_path).reader(codes["alice"]).order[0], "generated", 4, "Cardiomegaly"),
        (1, Store(study.answers_path).reader(codes["alice"]).order[1], "real", 2, "Nodule"),
    ]
    assert sorted({(name, sum(r[0] == name for r in rows)) for name, *_ in rows}) == [("alice", 40), ("bob", 40)]

    # The key never reached a browser: no source, no origin file or latent, no key file text.
    key = study.key().items
    secrets = [b'"source"', b"latent", b"phantom_0", (study.root / "key.json").read_bytes()[:60]]
    secrets += [entry.origin.encode() for entry in key.values()]
    images = {}
    for response_url, headers, body in bodies:
        assert not any(secret in body for secret in secrets), response_url
        if "/api/state" in response_url or "/api/answer" in response_url:
            data = json.loads(body)
            assert set(data) in (STATE_KEYS, {"error"}), data  # the state, or why there is none
        if "/api/image/" in response_url:
            item = response_url.rsplit("/", 1)[1]
            same = tuple(sorted((k, v) for k, v in headers.items() if k != "date"))
            images.setdefault(key[item].source, set()).add((len(body), same))
    assert images["real"] == images["generated"] and len(images["real"]) == 1

    # The report's figures equal a count on the database.
    result = CliRunner().invoke(main, ["reader-study", "report", str(study.root)])
    assert result.exit_code == 0, result.output
    report = json.loads((study.root / "report" / "report.json").read_text())
    for row in report["readers"]:
        mine = [r for r in rows if r[0] == row["reader"]]
        correct = sum(key[item].source == call for _, _, item, call, _, _ in mine)
        called_real = sum(key[item].source == "generated" and call == "real" for _, _, item, call, _, _ in mine)
        assert row["accuracy"] == pytest.approx(correct / 40)
        assert row["generated_called_real"] == pytest.approx(called_real / 20)
