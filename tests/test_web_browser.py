"""The web viewer in headless Chromium: search, filter by score, open a feature, heatmaps, inert hostile tokens,
the feature page's layout, the charts' axes and the layer page's panel order."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.stored import store_score
from tests.test_api_data import XSS_TOKENS, fill

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(sqlite_url, monkeypatch):
    import uvicorn

    from autointerp.api import create_app
    from storage.core.db import Database

    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    db = Database(sqlite_url)
    ids = fill(db)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(sqlite_url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ids
    uv.should_exit = True
    thread.join(timeout=10)
    db.dispose()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page()
        yield pg
        browser.close()


def test_search_filter_open_feature_and_inert_tokens(server, page, tmp_path):
    from playwright.sync_api import expect

    base, ids = server
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(base + "/")
    page.wait_for_selector("#results tr.result")
    assert page.locator("#results tr.result").count() == 7  # 6 features on layer 1, 1 on layer 0
    assert page.locator("#results tr.result td.score").first.text_content() == "0.950"

    page.fill("input[name=min_score]", "0.55")
    page.fill("input[name=layer]", "1")
    page.click("button[type=submit]")
    expect(page.locator("#results tr.result")).to_have_count(2)  # wait_for_function would need eval, which the CSP forbids
    assert page.locator("#results tr.result td.score").all_text_contents() == ["0.900", "0.600"]
    assert "min_score=0.55" in page.url

    page.click("#results tr.result:nth-child(2) a")  # the html-markup feature: its top record is hostile
    page.wait_for_selector("#top-records .sample[data-sample=top] .record .tok")
    top = page.locator("#top-records .sample[data-sample=top] .record").first
    assert top.locator(".tok").count() == len(XSS_TOKENS)
    assert top.locator(".tok").all_text_contents() == XSS_TOKENS
    assert top.locator(".tok").nth(1).get_attribute("title") == '" <img src=x onerror=alert(1)>" = 5.0000'
    assert page.locator(".sample[data-sample^=quantile] .record .tok").count() == 3
    assert page.locator(".sample[data-sample=random] .record .tok").count() == 2
    assert page.locator("img[src=x], img").count() == 0
    assert page.locator("#records script, #top-records script").count() == 0
    assert page.locator(".explanation-text").first.text_content() == "html markup with tags"
    page.screenshot(path=str(tmp_path / "feature.png"), full_page=True)

    # Real vs simulated side by side, scores, and the shuffled baseline on the best feature.
    page.goto(f"{base}/feature?id={ids['features'][0]}")
    page.wait_for_selector(".simulation .pair")
    pair = page.locator(".simulation .pair").first
    assert pair.locator(".heatmap.real .tok").count() == 4 and pair.locator(".heatmap.simulated .tok").count() == 4
    assert "undefined" in page.locator("#explanations").text_content()
    assert "references to cats" in page.locator("#baselines").text_content()
    # Similar features come from the sentence embedder; waiting also keeps no request in flight at teardown.
    expect(page.locator("#similar li").first).to_contain_text("numbers at layer zero", timeout=60_000)
    page.click("#next-feature")
    page.wait_for_url(f"**/feature?id={ids['features'][1]}")
    expect(page.locator("#similar li").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "feature-next.png"), full_page=True)

    # The OpenAPI docs render from local files under the same CSP (offline, no CDN).
    page.goto(base + "/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    assert page.locator(".opblock").count() >= 6

    assert (tmp_path / "feature.png").stat().st_size > 0
    assert dialogs == [] and errors == []


def test_evidence_density_and_layer_score_histograms(server, page, sqlite_url, tmp_path):
    from playwright.sync_api import expect

    from storage.core.db import Database
    from storage.core.schema import Feature

    base, ids = server
    db = Database(sqlite_url)
    with db.session() as s, s.begin():
        s.get(Feature, ids["features"][0]).extra = {
            "logits": {"promoted": [[" cat", 2.5], [" <b>dog</b>", 2.0]], "suppressed": [["\n", -1.0]]},
            "neighbours": [{"index": 3, "similarity": 0.8}, {"index": 42, "similarity": 0.2}]}
    db.dispose()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{base}/feature?id={ids['features'][0]}")
    page.wait_for_selector("#density-chart svg.histogram .bars.density rect")
    assert "all 2 tokens of the 1 random-sample window (drawn uniformly" in page.locator("#density").text_content()
    assert page.locator("#logits .token-chip.promoted").all_text_contents() == [" cat", " <b>dog</b>"]
    assert page.locator("#logits .token-chip.suppressed").all_text_contents() == ["↵"]
    assert page.locator("#logits b").count() == 0  # a token is text, never markup
    links = page.locator("#weight-neighbours a.weight-neighbour")
    assert links.all_text_contents() == ["#3"]  # feature 42 is not stored: listed, not linked
    assert "#42" in page.locator("#weight-neighbours").text_content()
    page.screenshot(path=str(tmp_path / "evidence.png"), full_page=True)
    links.first.click()
    page.wait_for_url(f"**/feature?id={ids['features'][3]}")
    expect(page.locator("#logits-absent")).to_be_visible()  # no evidence stored: said so
    expect(page.locator("#weight-neighbours-absent")).to_be_visible()

    page.click("#layer-link")
    page.wait_for_url("**/layer?**")
    chart = page.locator(".chart[data-method=ev_correlation][data-subset=top_and_random]")
    expect(chart.locator("svg .bars.own rect").first).to_be_attached()
    assert chart.locator("svg .bars.own rect").count() >= 3  # own scores 0.9, 0.6, 0.5, 0.2 fall in separate bins
    assert chart.locator("svg .bars.shuffled rect").count() >= 1
    assert "own: n=4" in chart.text_content() and "shuffled: n=1" in chart.text_content()
    page.screenshot(path=str(tmp_path / "layer.png"), full_page=True)
    assert errors == []


def _store_evidence(sqlite_url: str, feature_id: int) -> None:
    """A full set of weight evidence (10 + 10 tokens, 10 neighbours): the block that used to lead the page."""
    from storage.core.db import Database
    from storage.core.schema import Feature

    db = Database(sqlite_url)
    with db.session() as s, s.begin():
        s.get(Feature, feature_id).extra = {
            "logits": {"promoted": [[f" up{i}", 2.0 - i / 10] for i in range(10)],
                       "suppressed": [[f" down{i}", -1.0 - i / 10] for i in range(10)]},
            "neighbours": [{"index": i, "similarity": 0.9 - i / 20} for i in range(1, 11)]}
    db.dispose()


def _csp_violations(page) -> list[str]:
    """Console messages of the page that report a Content-Security-Policy refusal, collected as they come."""
    refused: list[str] = []
    page.on("console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None)
    return refused


def _top(page, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    return box["y"]


def test_feature_page_leads_with_explanation_scores_and_top_examples(server, page, sqlite_url, tmp_path):
    base, ids = server
    _store_evidence(sqlite_url, ids["features"][0])
    refused = _csp_violations(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{base}/feature?id={ids['features'][0]}")
    page.wait_for_selector("#logits .token-chip")
    page.wait_for_selector("#top-records .record .tok")

    explanation = _top(page, "#explanations .explanation-card")
    top_records = _top(page, "#top-records .record")
    evidence = min(_top(page, sel) for sel in ("#evidence", "#stats", "#density", "#logits", "#weight-neighbours"))
    assert explanation < 600  # on the first screen
    assert explanation < top_records < evidence
    assert _top(page, "#baselines") < evidence
    # The shuffled baseline measured the same way stands in the own score's row.
    row = page.locator("#explanations tr", has_text="top_and_random").filter(has_text="ev_correlation").first
    assert row.locator("td").all_text_contents()[-1] == "0.050"
    borrowed = page.locator("#baselines a.borrowed")
    assert borrowed.text_content() == "references to cats and other pets"
    assert borrowed.get_attribute("href") == f"/feature?id={ids['features'][1]}"
    page.screenshot(path=str(tmp_path / "feature-first-screen.png"))
    assert refused == []


def _texts_inside(page, chart: str) -> list[str]:
    """Every text of the chart's SVG drawn wholly inside the SVG's box (a clipped label fails)."""
    root = page.locator(f"{chart} svg.histogram").first.bounding_box()
    texts = page.locator(f"{chart} svg.histogram text")
    assert texts.count() >= 6
    for i in range(texts.count()):
        box = texts.nth(i).bounding_box()
        assert box is not None and box["width"] > 0
        label = texts.nth(i).text_content()
        assert root["x"] <= box["x"] and box["x"] + box["width"] <= root["x"] + root["width"], f"{label!r} clipped"
        assert root["y"] <= box["y"] and box["y"] + box["height"] <= root["y"] + root["height"], f"{label!r} clipped"
    return texts.all_text_contents()


def test_density_axes_are_whole_and_cover_the_top_records(server, page, sqlite_url, tmp_path):
    from activations.records import ActivationRecord, FeatureStats, Provenance
    from storage.core import repository as repo
    from storage.core.db import Database
    from storage.core.schema import Feature
    from storage.records import record_store

    base, ids = server
    # 1400 random-sample tokens, 200 of them at 0: the count label is three digits; the top record reaches 4.0.
    random_acts = [(i % 7) / 10 for i in range(1400)]
    db = Database(sqlite_url)
    with db.session() as s, s.begin():
        record_store.add_records(s, s.get(Feature, ids["features"][2]), [
            ActivationRecord([" top", " x"], [4.0, 0.0], sample="top", provenance=Provenance("toy", "d", 0)),
            ActivationRecord([f" w{i}" for i in range(1400)], random_acts, sample="random",
                             provenance=Provenance("toy", "big", 0))], replace=True)
        silent = s.get(Feature, ids["features"][5])  # never fires: every value is 0
        repo.set_feature_stats(silent, FeatureStats(max_activation=0.0, min_activation=0.0, firing_fraction=0.0))
        record_store.add_records(s, silent, [ActivationRecord([" a", " b"], [0.0, 0.0], sample="random",
                                                              provenance=Provenance("toy", "z", 0))], replace=True)
    db.dispose()
    refused = _csp_violations(page)
    page.goto(f"{base}/feature?id={ids['features'][2]}")
    page.wait_for_selector("#density-chart svg.histogram .bars.density rect")

    texts = _texts_inside(page, "#density-chart")
    assert "tokens (log scale)" in texts
    ticks = [float(t) for t in page.locator("#density-chart svg text.x-tick").all_text_contents()]
    assert min(ticks) <= 0.0 and max(ticks) >= 4.0  # the axis reaches the top record, not only the sample's 0.6
    note = page.locator("#density-note").text_content()
    assert "all 1400 tokens of the 1 random-sample window" in note
    assert "reaching 0.00 to 0.60" in note and "0.00 to 4.00" in note
    page.locator("#density").screenshot(path=str(tmp_path / "density.png"))

    page.goto(f"{base}/feature?id={ids['features'][5]}")
    page.wait_for_selector("#density-chart svg.histogram .bars.density rect")
    _texts_inside(page, "#density-chart")
    # One value: centred on a unit-wide axis, not at the left end of an invented 0-30 one.
    assert page.locator("#density-chart svg text.x-tick").all_text_contents() == ["-0.50", "0.00", "0.50"]
    assert refused == []


def test_layer_page_headline_first_in_a_fixed_order_with_legends(server, page, sqlite_url, tmp_path):
    from storage.core.db import Database
    from storage.core.schema import Explanation, Feature

    base, ids = server
    db = Database(sqlite_url)
    with db.session() as s, s.begin():  # an imported score, stored with the file's simulator name
        explanation = s.get(Explanation, ids["explanations"][4])
        store_score(s, explanation, s.get(Feature, ids["features"][4]), method="ev_correlation",
                       subset="top_and_random", value=0.8, simulator="import:openai")
    db.dispose()
    refused = _csp_violations(page)
    page.goto(f"{base}/layer?model=toy-model&layer=1")
    page.wait_for_selector(".chart svg .bars rect")

    charts = page.locator("#histograms .chart")
    order = [(charts.nth(i).get_attribute("data-method"), charts.nth(i).get_attribute("data-subset"),
              charts.nth(i).locator("h3").text_content()) for i in range(charts.count())]
    assert order == [
        ("ev_correlation", "top_and_random", "ev_correlation · top_and_random · embedding"),
        ("ev_correlation", "random_only", "ev_correlation · random_only · embedding"),
        ("rsquared", "top_and_random", "rsquared · top_and_random · embedding"),
        ("ev_correlation", "top_and_random", "ev_correlation · top_and_random · import:openai · imported"),
    ]
    first = ".chart:first-child"
    texts = _texts_inside(page, first)
    assert "own" in texts and "shuffled" in texts and "features" in texts
    fills = {cls: page.locator(f"{first} svg .bars.{cls} rect").first.evaluate("e => getComputedStyle(e).fill")
             for cls in ("own", "shuffled")}
    assert fills == {"own": "rgb(0, 114, 178)", "shuffled": "rgb(230, 159, 0)"}  # Okabe–Ito blue and orange
    page.screenshot(path=str(tmp_path / "layer.png"), full_page=True)

    page.goto(f"{base}/feature?id={ids['features'][4]}")
    badge = page.locator("#explanations .imported")
    badge.wait_for()
    assert badge.text_content() == "imported"
    assert refused == []


def test_feature_page_shows_both_sides_of_a_signed_feature(server, page, sqlite_url, monkeypatch):
    """A planted signed feature explained on both sides (rule-following fake over real HTTP): the page says which
    side is larger, lists both sides with their scores, names each card's side and shows the most negative
    records beside the top ones."""
    from click.testing import CliRunner
    from playwright.sync_api import expect
    from sqlalchemy import select

    from autointerp.cli import main
    from storage.core.db import Database
    from storage.core.schema import Feature, SubjectModel
    from tests.fake_openai import FakeOpenAI
    from tests.pipeline_data import uncached_spec
    from tests.planted_rules import value_digit
    from tests.planted_signed import EXPLANATION, MODEL, signed_answer, store_signed

    base, _ = server
    db = Database(sqlite_url)
    store_signed(db)
    fake = FakeOpenAI(answer=signed_answer, digit_for=value_digit).start()
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake-key-123")
    args = ["explain", "--model", MODEL, "--layer", "0", "--features", "0-1", "--polarity", "both", "--explainer",
            uncached_spec(), "--simulator", f"json:{uncached_spec()}", "--db", sqlite_url]
    results = []
    # On its own thread: Playwright's sync API holds this thread's event loop, and the run starts its own.
    worker = threading.Thread(target=lambda: results.append(CliRunner().invoke(main, args)))
    try:
        worker.start()
        worker.join(timeout=300)
    finally:
        fake.stop()
    assert results and results[0].exit_code == 0, results[0].output if results else "explain did not finish"
    with db.session() as s:
        feature_id = s.scalar(select(Feature.id).join(SubjectModel, SubjectModel.id == Feature.model_id)
                              .where(SubjectModel.name == MODEL, Feature.layer == 0, Feature.index == 0))
    db.dispose()
    page.goto(f"{base}/feature?id={feature_id}")
    expect(page.locator("#status")).to_have_text("")
    expect(page.locator(".larger-side")).to_contain_text("Larger side: negative")
    sides = page.locator("#sides table tbody tr")
    expect(sides).to_have_count(2)
    expect(sides.nth(1)).to_contain_text("negative (larger)")
    expect(sides.nth(1)).to_contain_text(EXPLANATION["months"])
    expect(sides.nth(0)).to_contain_text(EXPLANATION["digits"])
    expect(page.locator('.explanation-card[data-polarity="negative"] .side')).to_have_text("negative side")
    expect(page.locator('#top-records .sample[data-sample="bottom"] h3')).to_have_text("Most negative (20)")


def _store_steering(url: str, feature_id: int) -> None:
    from activations.steering_results import SteeringFailure, SteeringResult
    from storage.core import repository as repo
    from storage.core.db import Database
    from storage.results.steering_store import save_steering

    config = {"model": "m", "hook": "blocks.6.hook_resid_post", "target_kl": 0.5, "tokens": 8, "temperature": 0.7,
              "prompts_version": "neutral-v1"}
    result = SteeringResult(strength=575.7, kl=0.512, target_kl=0.5, prompts=("The", "Once upon a time,"),
                            steered=(" Paris Fashion Week", f" in Paris{XSS_TOKENS[1]}"),
                            unsteered=((" first time", " cat sat"), (" a king", " there was")))
    db = Database(url)
    with db.session() as s, s.begin():
        feature = repo.get_feature(s, feature_id)
        save_steering(s, feature, config, result, run_id=None)
        save_steering(s, feature, {**config, "target_kl": 4.0}, SteeringFailure("KL 1.2 below the target 4"),
                      run_id=None)
    db.dispose()


def test_feature_page_shows_steered_beside_unsteered_with_strength_and_kl(server, page, sqlite_url):
    base, ids = server
    _store_steering(sqlite_url, ids["features"][0])
    refused = _csp_violations(page)
    page.goto(f"{base}/feature?id={ids['features'][0]}")
    page.wait_for_selector("#steering .steering-run[data-status=ok] table")
    ok = page.locator("#steering .steering-run[data-status=ok]")
    assert "strength 575.7 · KL 0.512 (target 0.500)" in ok.locator("h3").text_content()
    rows = ok.locator("tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).locator("td")
    assert first.all_text_contents()[:2] == ["The", " Paris Fashion Week"]
    assert first.nth(2).locator("div").all_text_contents() == [" first time", " cat sat"]
    assert XSS_TOKENS[1] in rows.nth(1).locator("td.steered").text_content()  # shown as text, never run
    failed = page.locator("#steering .steering-run[data-status=failed]")
    assert "failed: KL 1.2 below the target 4" in failed.text_content()
    page.goto(f"{base}/feature?id={ids['features'][1]}")
    page.wait_for_selector("#steering p.muted")
    assert "Not steered" in page.locator("#steering").text_content()
    assert refused == []
