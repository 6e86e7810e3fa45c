"""Reader studies without a browser: the study's files, the web app's rules, and the report's numbers.

The browser test (tests/test_reader_browser.py) drives the same app in Chromium.
"""

from __future__ import annotations

import json
import math
import random
import socket
import sqlite3
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import create_study_args
from ganforge_plugins.image_folder import read_image
from PIL import Image
from starlette.testclient import TestClient

from ganforge.cli import main
from ganforge.plugins import load_registry
from ganforge.reader_study.server import create_app
from ganforge.reader_study.store import Store
from ganforge.reader_study.study import Study
from ganforge.sampling import latents, load_generator


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make_study(tmp_path, phantom_folder, tiny_generator, n=12, *extra) -> Study:
    out = tmp_path / "study"
    result = run(*create_study_args(phantom_folder, tiny_generator, n, out, "--seed", 5, *extra))
    assert result.exit_code == 0, result.output
    return Study.open(out)


def png_chunks(data: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        chunks.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return chunks


def test_real_and_generated_files_cannot_be_told_apart(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator, 20, "--ask-finding")
    key = study.key().items
    assert sorted(e.source for e in key.values()) == ["generated"] * 10 + ["real"] * 10
    files = sorted((study.root / "images").iterdir())
    assert len(files) == 20 and all(len(f.stem) == 16 and int(f.stem, 16) >= 0 for f in files)
    assert len({f.stat().st_size for f in files}) == 1  # same bytes for every image
    for f in files:
        data = f.read_bytes()
        assert png_chunks(data) == [b"IHDR", b"IDAT", b"IEND"]  # no text, time, gamma or size metadata
        width, height, depth, colour = *np.frombuffer(data[16:24], ">u4"), data[24], data[25]
        assert (width, height, depth, colour) == (16, 16, 8, 0)  # 8-bit grayscale
        with Image.open(f) as image:
            assert image.mode == "L" and not image.info
    # The pixels are the sources', untouched: a real image is the phantom file read as training reads it,
    # a generated image is the generator's output for its latent.
    generator, _ = load_generator(tiny_generator, load_registry())
    z = latents(10, generator.latent_dim, 5)
    for item_id, entry in key.items():
        pixels = np.asarray(Image.open(study.image_path(item_id)))
        if entry.source == "real":
            expected = read_image(phantom_folder / "images" / entry.origin, 16, 1)[0]
            labels = (phantom_folder / "labels.csv").read_text()
            assert f"{entry.origin},{'|'.join(entry.findings) or 'No Finding'}" in labels
        else:
            index = int(entry.origin.rsplit(" ", 1)[1])
            with torch.no_grad():
                out = generator(z[index : index + 1])[-1]
            expected = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0, 0].numpy()
            assert entry.findings is None
        np.testing.assert_array_equal(pixels, expected)
    assert study.manifest.findings == ["Cardiomegaly", "Effusion", "Lung_Opacity", "Nodule", "No Finding"]


def test_create_refuses_bad_input_and_never_leaves_half_a_study(tmp_path, phantom_folder, tiny_generator, monkeypatch):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    again = run(*create_study_args(phantom_folder, tiny_generator, 4, study.root))
    assert again.exit_code == 2 and "already exists" in again.output
    both = run(*create_study_args(phantom_folder, tiny_generator, 4, tmp_path / "x", "--fake", phantom_folder))
    assert both.exit_code == 2 and "either --weights" in both.output
    too_many = run(*create_study_args(phantom_folder, tiny_generator, 200, tmp_path / "y"))
    assert too_many.exit_code == 2 and "has 60 images; the study needs 100" in too_many.output
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for f in sorted((phantom_folder / "images").iterdir())[:8]:
        (unlabelled / f.name).write_bytes(f.read_bytes())
    no_labels = run(*create_study_args(unlabelled, tiny_generator, 8, tmp_path / "z", "--ask-finding"))
    assert no_labels.exit_code == 2 and "needs labels" in no_labels.output

    import ganforge.reader_study.study as study_module

    calls = []

    def failing_encode(image):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return encode(image)

    encode = study_module.encode
    monkeypatch.setattr(study_module, "encode", failing_encode)
    failed = run(*create_study_args(phantom_folder, tiny_generator, 8, tmp_path / "half"))
    assert failed.exit_code == 1 and "No space left" in failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study", "unlabelled"]  # no study, no partial folder
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_study_from_two_folders_takes_the_generated_images_size(tmp_path, phantom_folder):
    fake = tmp_path / "fake"
    result = run("phantom", "--out", fake, "-n", 10, "--resolution", 8, "--seed", 9)
    assert result.exit_code == 0
    result = run(
        "reader-study",
        "create",
        "--real",
        phantom_folder,
        "--fake",
        fake,
        "-n",
        10,
        "--out",
        tmp_path / "s",
        "--ask-finding",
    )
    assert result.exit_code == 0, result.output
    study = Study.open(tmp_path / "s")
    assert study.manifest.resolution == 8
    assert all(e.findings is not None for e in study.key().items.values())  # the fake folder's labels.csv


def test_opening_a_changed_study_fails_with_the_file_named(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator, 4)
    victim = study.image_path(study.item_ids[0])
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    result = run("reader-study", "serve", study.root)
    assert result.exit_code == 2 and f"{victim}: image changed" in result.output


def client_for(study: Study, code: str | None = None) -> TestClient:
    client = TestClient(create_app(study))
    if code is not None:
        assert client.post("/api/session", json={"code": code}).status_code == 200
    return client


def answer(client: TestClient, call="real", confidence=3, finding=None, position=None):
    state = client.get("/api/state").json()
    assert client.get(f"/api/image/{state['item']}").status_code == 200
    return client.post(
        "/api/answer",
        json={
            "position": state["position"] if position is None else position,
            "call": call,
            "confidence": confidence,
            "finding": finding,
        },
    )


def test_every_request_needs_a_code_and_nothing_outside_the_study_is_served(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    code = Store(study.answers_path).add_reader("alice", study.item_ids, study.manifest.seed)
    anonymous = client_for(study)
    first = study.item_ids[0]
    for method, path in [("GET", "/api/state"), ("GET", f"/api/image/{first}"), ("POST", "/api/answer")]:
        assert anonymous.request(method, path, json={}).status_code == 401
        assert anonymous.request(method, path, json={}, headers={"X-Reader-Code": "AAAAA-AAAAA"}).status_code == 401
    assert anonymous.post("/api/session", json={"code": "AAAAA-AAAAA"}).status_code == 401
    assert anonymous.get("/").status_code == 200  # the sign-in page itself holds no study data

    alice = client_for(study, code.lower().replace("-", " "))  # codes are forgiving about case and dashes
    key_text = (study.root / "key.json").read_text()
    for path in [
        "/key.json",
        "/study.json",
        "/answers.sqlite",
        f"/images/{first}.png",
        "/api/image/..%2Fkey.json",
        "/api/image/../key.json",
        "/api/image/%2e%2e%2fstudy.json",
        "/api/image/key",
        "/static/../key.json",
        "/api/image/" + "0" * 16,
    ]:
        response = alice.get(path)
        assert response.status_code == 404, path
        assert key_text[:40] not in response.text
    order = Store(study.answers_path).reader(code).order
    assert alice.get(f"/api/image/{order[1]}").status_code == 404  # no reading ahead
    assert alice.get(f"/api/image/{order[0]}").status_code == 200


def test_answers_follow_the_readers_order_and_cannot_be_changed_by_default(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    store = Store(study.answers_path)
    alice = client_for(study, store.add_reader("alice", study.item_ids, study.manifest.seed))
    assert answer(alice, "generated", 4).status_code == 200
    state = alice.get("/api/state").json()
    assert (state["position"], state["answered"], state["total"]) == (1, 1, 12)
    assert answer(alice, position=0).status_code == 409  # the first answer is final
    assert alice.get("/api/state?position=0").status_code == 409
    assert answer(alice, position=5).status_code == 409  # no skipping ahead
    assert answer(alice, "maybe").json()["error"] == "call must be 'real' or 'generated'"
    assert answer(alice, confidence=6).status_code == 400
    assert answer(alice, finding="Nodule").json()["error"] == "this study does not ask for a finding"
    [saved] = store.answers()
    [reader] = store.readers()
    assert (saved.reader, saved.position, saved.item, saved.call, saved.confidence) == (
        "alice",
        0,
        reader.order[0],
        "generated",
        4,
    )
    assert saved.seconds >= 0


def test_changes_when_the_study_allows_them(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator, 12, "--allow-changes", "--ask-finding")
    store = Store(study.answers_path)
    alice = client_for(study, store.add_reader("alice", study.item_ids, study.manifest.seed))
    assert answer(alice, "real", 2, finding="Nodule").status_code == 200
    assert answer(alice, "real", 2).json()["error"].startswith("finding must be one of Cardiomegaly")
    assert answer(alice, "real", 5, finding="No Finding").status_code == 200
    back = alice.get("/api/state?position=0").json()
    assert back["answer"] == {"call": "real", "confidence": 2, "finding": "Nodule"}
    assert answer(alice, "generated", 1, finding="Effusion", position=0).status_code == 200
    first = store.answers()[0]
    assert (first.call, first.confidence, first.finding, first.changes) == ("generated", 1, "Effusion", 1)
    assert alice.get("/api/state").json()["position"] == 2  # back at the next unanswered image


def test_two_readers_at_once_keep_their_own_places(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    store = Store(study.answers_path)
    codes = {name: store.add_reader(name, study.item_ids, study.manifest.seed) for name in ("alice", "bob")}
    assert store.reader(codes["alice"]).order != store.reader(codes["bob"]).order  # an order of their own
    errors = []

    def read_all(name, call):
        client = client_for(study, codes[name])
        for _ in range(12):
            response = answer(client, call, 3)
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=read_all, args=a) for a in (("alice", "real"), ("bob", "generated"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(study.answers_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute(
            "SELECT r.name, a.call, COUNT(*) FROM answers a JOIN readers r ON r.id = a.reader_id "
            "GROUP BY r.name, a.call"
        ).fetchall()
    assert sorted(rows) == [("alice", "real", 12), ("bob", "generated", 12)]
    assert client_for(study, codes["bob"]).get("/api/state").json()["done"] is True


def test_responses_do_not_depend_on_an_images_source(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    key = study.key().items
    alice = client_for(study, Store(study.answers_path).add_reader("alice", study.item_ids, study.manifest.seed))
    seen = {}
    for _ in range(12):
        state = alice.get("/api/state")
        image = alice.get(f"/api/image/{state.json()['item']}")
        headers = {k: v for k, v in image.headers.items() if k != "date"}
        seen.setdefault(key[state.json()["item"]].source, set()).add(json.dumps(sorted(headers.items())))
        assert sorted(state.json()) == sorted(alice.get("/api/state").json())
        alice.post("/api/answer", json={"position": state.json()["position"], "call": "real", "confidence": 1})
    assert len(seen["real"]) == len(seen["generated"]) == 1 and seen["real"] == seen["generated"]


# ---- the report against an independent computation ----


def by_hand_binomial_p(k: int, n: int) -> float:
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def by_hand_auc(pairs: list[tuple[str, int]]) -> float:
    positive = [s for t, s in pairs if t == "generated"]
    negative = [s for t, s in pairs if t == "real"]
    wins = sum((p > q) + 0.5 * (p == q) for p in positive for q in negative)
    return wins / (len(positive) * len(negative))


def by_hand_cohen(a: list[int], b: list[int]) -> float:
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in (0, 1))
    return (observed - expected) / (1 - expected)


def by_hand_fleiss(calls: list[list[int]]) -> float:
    n_raters = len(calls[0])
    per_item = [(sum(row), n_raters - sum(row)) for row in calls]
    p_items = [(g * (g - 1) + r * (r - 1)) / (n_raters * (n_raters - 1)) for g, r in per_item]
    shares = [sum(g for g, _ in per_item), sum(r for _, r in per_item)]
    total = sum(shares)
    expected = sum((s / total) ** 2 for s in shares)
    return (sum(p_items) / len(p_items) - expected) / (1 - expected)


def test_report_equals_an_independent_computation_on_the_database(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator, 24, "--ask-finding")
    store = Store(study.answers_path)
    key = study.key().items
    rng = random.Random(1)
    for name, skill, stop in (("alice", 0.85, 24), ("bob", 0.6, 24), ("carol", 0.5, 17)):
        reader = store.reader(store.add_reader(name, study.item_ids, study.manifest.seed))
        for position, item in enumerate(reader.order[:stop]):
            truth = key[item].source
            call = truth if rng.random() < skill else {"real": "generated", "generated": "real"}[truth]
            finding = rng.choice(study.manifest.findings)
            store.record(reader, position, call, rng.randint(1, 5), finding, allow_changes=False)
    result = run("reader-study", "report", study.root)
    assert result.exit_code == 0, result.output
    report = json.loads((study.root / "report" / "report.json").read_text())

    with sqlite3.connect(study.answers_path) as db:
        rows = db.execute(
            "SELECT r.name, a.item, a.call, a.confidence, a.finding FROM answers a JOIN readers r ON r.id = a.reader_id"
        ).fetchall()
    by_reader = {}
    for name, item, call, confidence, finding in rows:
        by_reader.setdefault(name, []).append((key[item].source, call, confidence, finding, key[item].findings))
    for row in report["readers"]:
        answers = by_reader[row["reader"]]
        correct = sum(t == c for t, c, *_ in answers)
        generated = [a for a in answers if a[0] == "generated"]
        real = [a for a in answers if a[0] == "real"]
        assert row["reads"] == len(answers)
        assert row["accuracy"] == pytest.approx(correct / len(answers))
        assert row["sensitivity"] == pytest.approx(sum(c == "generated" for _, c, *_ in generated) / len(generated))
        assert row["specificity"] == pytest.approx(sum(c == "real" for _, c, *_ in real) / len(real))
        assert row["generated_called_real"] == pytest.approx(1 - row["sensitivity"])
        assert row["binomial_p"] == pytest.approx(by_hand_binomial_p(correct, len(answers)))
        scores = [(t, conf if c == "generated" else -conf) for t, c, conf, *_ in answers]
        assert row["auc"] == pytest.approx(by_hand_auc(scores))
        named = sum(f in (truth or ["No Finding"]) for t, c, conf, f, truth in answers if truth is not None)
        assert row["finding_accuracy"] == pytest.approx(named / sum(a[4] is not None for a in answers))
    pooled = [a for answers in by_reader.values() for a in answers]
    assert report["pooled"]["accuracy"] == pytest.approx(sum(t == c for t, c, *_ in pooled) / len(pooled))
    assert report["mean_reader_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in report["readers"]]))

    calls = {name: {} for name in by_reader}
    for name, item, call, *_ in rows:
        calls[name][item] = int(call == "generated")
    for pair in report["agreement"]["cohen"]:
        a, b = pair["readers"]
        common = sorted(calls[a].keys() & calls[b].keys())
        assert pair["images"] == len(common) == (17 if "carol" in pair["readers"] else 24)
        assert pair["kappa"] == pytest.approx(
            by_hand_cohen([calls[a][i] for i in common], [calls[b][i] for i in common])
        )
    everyone = sorted(set.intersection(*(set(c) for c in calls.values())))
    fleiss = by_hand_fleiss([[calls[name][item] for name in calls] for item in everyone])
    assert report["agreement"]["fleiss"] == {"images": 17, "kappa": pytest.approx(fleiss)}

    nodule = [a for a in pooled if a[4] and "Nodule" in a[4]]
    assert report["by_finding"]["Nodule"]["reads"] == len(nodule)
    assert report["by_finding"]["Nodule"]["accuracy"] == pytest.approx(sum(t == c for t, c, *_ in nodule) / len(nodule))

    folder = study.root / "report"
    csv_rows = (folder / "answers.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 24 + 24 + 17 and csv_rows[0].startswith("reader,image,truth,call")
    markdown = (folder / "report.md").read_text()
    assert "| **pooled** | 65 |" in markdown and "Fleiss' κ over the 17 images" in markdown
    with Image.open(folder / "report.png") as plot:
        assert plot.format == "PNG" and plot.width > 600 and plot.height > 300


def test_add_reader_and_report_errors(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator, 4)
    no_readers = run("reader-study", "serve", study.root)
    assert no_readers.exit_code == 2 and "no readers yet" in no_readers.output
    assert run("reader-study", "report", study.root).exit_code == 2  # no answers yet
    first = run("reader-study", "add-reader", study.root, "alice")
    assert first.exit_code == 0 and len(first.stdout.strip()) == 11
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run("reader-study", "serve", study.root, "--port", port)
        assert busy.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.output
    again = run("reader-study", "add-reader", study.root, "alice")
    assert again.exit_code == 2 and "already exists" in again.output
    assert run("reader-study", "add-reader", tmp_path / "nothing", "bob").exit_code == 2


def test_state_changing_requests_from_another_origin_are_refused(tmp_path, phantom_folder, tiny_generator):
    study = make_study(tmp_path, phantom_folder, tiny_generator)
    code = Store(study.answers_path).add_reader("alice", study.item_ids, study.manifest.seed)
    client = client_for(study)
    sign_in = {"code": code}
    evil = {"origin": "https://evil.example"}
    assert client.post("/api/session", json=sign_in, headers=evil).status_code == 403
    assert client.post("/api/session", json=sign_in, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    form = client.post("/api/session", content=json.dumps(sign_in), headers={"content-type": "text/plain"})
    assert form.status_code == 415  # what a cross-site <form> can send without a preflight
    own = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert client.post("/api/session", json=sign_in, headers=own).status_code == 200
    before = client.get("/api/state").json()
    body = {"position": 0, "call": "real", "confidence": 3, "finding": None}
    assert client.post("/api/answer", json=body, headers=evil).status_code == 403
    assert client.get("/api/state").json() == before  # nothing was recorded
    proxied = {"origin": "https://reading.example.org", "x-forwarded-host": "reading.example.org"}
    assert client.post("/api/logout", json={}, headers=proxied).status_code == 200


def test_oversized_malformed_and_deep_bodies_are_refused_without_reading_them_whole(
    tmp_path, phantom_folder, tiny_generator
):
    from ganforge.reader_study.server import MAX_BODY

    study = make_study(tmp_path, phantom_folder, tiny_generator)
    client = client_for(study)
    huge = b'{"code": "' + b"A" * (MAX_BODY + 1) + b'"}'
    response = client.post("/api/session", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json() == {"error": f"request body over {MAX_BODY} bytes"}

    def chunks():  # no Content-Length: the server stops reading once the cap is passed
        yield b'{"code": "'
        for _ in range(100):
            yield b"A" * MAX_BODY

    streamed = client.post("/api/session", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    for body in (b"{not json", b"\xff\xfe", ("[" * 20_000 + "]" * 20_000).encode()):
        response = client.post("/api/session", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json() == {"error": "the request body is not valid JSON"}


def test_repeated_wrong_session_codes_are_slowed_down(tmp_path, phantom_folder, tiny_generator):
    from ganforge.reader_study.server import FREE_FAILURES, ReadingApp

    study = make_study(tmp_path, phantom_folder, tiny_generator)
    code = Store(study.answers_path).add_reader("alice", study.item_ids, study.manifest.seed)
    app = ReadingApp(study)
    now = [1000.0]
    app.throttle.clock = lambda: now[0]
    client = TestClient(app.asgi())
    for _ in range(FREE_FAILURES - 1):
        assert client.post("/api/session", json={"code": "AAAAA-AAAAA"}).status_code == 401
    assert client.post("/api/session", json={"code": "AAAAA-AAAAA"}).status_code == 401  # the 5th: a 1 s wait
    refused = client.post("/api/session", json={"code": code})  # even the right code waits
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert client.get("/api/state", headers={"X-Reader-Code": "BBBBB-BBBBB"}).status_code == 429  # any endpoint
    now[0] += 1.5
    assert client.post("/api/session", json={"code": "AAAAA-AAAAA"}).status_code == 401  # the 6th: 2 s
    now[0] += 1.0
    assert client.post("/api/session", json={"code": code}).status_code == 429
    now[0] += 1.5
    assert client.post("/api/session", json={"code": code}).status_code == 200  # and the count starts again
    assert client.post("/api/session", json={"code": "AAAAA-AAAAA"}).status_code == 401
