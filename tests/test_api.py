"""The HTTP API through FastAPI's TestClient, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from autointerp.api import create_app
from storage.reads.queries import FeatureQuery, query_features
from tests.test_api_data import MODEL, XSS_TOKENS, fill


@pytest.fixture
def filled(db):
    return db, fill(db)


@pytest.fixture
def client(filled, monkeypatch):
    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    db, _ = filled
    with TestClient(create_app(db.url)) as c:
        yield c


def test_models_lists_layers_and_counts(client):
    (model,) = client.get("/api/models").json()
    assert model["model"] == MODEL
    assert {(layer["layer"], layer["features"]) for layer in model["layers"]} == {(0, 1), (1, 6)}


def test_feature_list_sorted_by_score_then_unscored(client, filled):
    items = client.get("/api/features", params={"layer": 1}).json()["items"]
    assert [i["score"] for i in items] == [0.9, 0.6, 0.5, 0.2, None, None]
    assert items[0]["explanation"] == "numbers and digits in lists"
    assert items[-1]["explanation"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"layer": 1, "min_score": 0.55},
        {"min_score": 0.3},
        {"method": "rsquared", "layer": 1},
        {"subset": "random_only"},
        {"q": "cats"},
        {"q": "digit"},  # stemmed
        {"explainer": "openai:gpt-test"},
        {"simulator": "embedding", "min_score": 0.1},
        {"model": "no-such-model"},
    ],
)
def test_filters_match_autointerp_query(client, filled, params):
    db, _ = filled
    body = client.get("/api/features", params=params).json()
    q = FeatureQuery(**{("search" if k == "q" else k): v for k, v in params.items()}, limit=50)
    with db.session() as s:
        expected = query_features(s, q)
    assert body["items"] == expected
    assert body["order"] == "score"


def test_filters_select_the_right_features(client):
    def indices(**params):
        return [(i["layer"], i["index"]) for i in client.get("/api/features", params=params).json()["items"]]

    assert indices(min_score=0.55) == [(0, 7), (1, 0), (1, 3)]
    assert indices(q="cats") == [(1, 1)]
    assert indices(layer=0) == [(0, 7)]
    assert indices(q="tags", min_score=0.7) == []


def test_pagination(client):
    first = client.get("/api/features", params={"layer": 1, "limit": 4}).json()
    second = client.get("/api/features", params={"layer": 1, "limit": 4, "offset": 4}).json()
    assert first["has_more"] and not second["has_more"]
    assert [i["index"] for i in first["items"] + second["items"]] == [0, 3, 1, 2, 4, 5]


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"limit": 1000}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": 10**7}, "offset"),
        ({"q": "x" * 201}, "q"),
        ({"semantic": "x" * 501}, "semantic"),
        ({"method": "DROP TABLE"}, "method"),
        ({"layer": "six"}, "layer"),
        ({"kind": "neuron"}, "kind"),
    ],
)
def test_limits_give_clear_422(client, params, parameter):
    response = client.get("/api/features", params=params)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["parameter"] == parameter
    assert parameter in body["error"]


def test_search_without_words_is_a_clear_400(client):
    response = client.get("/api/features", params={"q": "!!!"})
    assert response.status_code == 400
    assert "no words" in response.json()["error"]


def test_feature_page_has_everything(client, filled):
    _, ids = filled
    f = client.get(f"/api/features/{ids['features'][0]}").json()
    assert (f["model"], f["layer"], f["kind"], f["index"], f["sae"]) == (MODEL, 1, "mlp_neuron", 0, None)
    assert f["stats"]["max_activation"] == 2.0 and f["stats"]["quantile_boundaries"] == [0.1, 0.5, 1.0]
    assert list(f["records"]) == ["top", "quantile:0", "random"]
    assert [r["data_split"] for r in (f["records"]["top"][0], f["records"]["quantile:0"][0], f["records"]["random"][0])] == [
        "train", "valid", "test"]

    (explanation,) = f["explanations"]
    assert explanation["text"] == "numbers and digits in lists"
    assert explanation["run"]["id"] == ids["run"] and explanation["run"]["status"] == "done"
    assert (explanation["prompt_version"], explanation["prompt_tokens"], explanation["cost_usd"]) == ("v1", 100, 0.001)
    scores = {(s["method"], s["subset"]): s for s in explanation["scores"]}
    assert scores[("ev_correlation", "top_and_random")]["value"] == 0.9
    assert scores[("ev_correlation", "top_and_random")]["ci_low"] == pytest.approx(0.8)
    undefined = scores[("ev_correlation", "random_only")]
    assert undefined["value"] is None and "undefined" in undefined["undefined_reason"]
    assert all(s["role"] == "own" for s in explanation["scores"])

    (baseline,) = f["shuffled_baselines"]
    assert f["sanity_baselines"] == f["shuffled_baselines"]  # the old name, kept for one release
    assert baseline["role"] == "shuffled" and baseline["value"] == 0.05
    # The explanation the shuffled simulation was made with (feature 1's), not the feature's own.
    assert baseline["explanation_id"] == ids["explanations"][0]
    assert baseline["borrowed_explanation_id"] == ids["explanations"][1]
    assert baseline["explanation_text"] == "references to cats and other pets"
    assert baseline["explanation_feature_id"] == ids["features"][1]

    own = next(s for s in f["simulations"] if s["role"] == "own")
    (record,) = own["records"]
    assert record["tokens"] == [" t0", " one", " two", " three"]
    assert record["real"] == [0.0, 2.0, 0.5, 1.0]
    assert record["expected"] == [0.1, 1.5, 0.4, 0.9]
    assert {s["role"] for s in f["simulations"]} == {"own", "shuffled"}

    assert f["neighbours"] == {"prev": None, "next": ids["features"][1]}


def test_feature_page_keeps_untrusted_tokens_verbatim(client, filled):
    _, ids = filled
    f = client.get(f"/api/features/{ids['features'][3]}").json()
    assert f["records"]["top"][0]["tokens"] == XSS_TOKENS
    assert f["neighbours"] == {"prev": ids["features"][2], "next": ids["features"][4]}


def test_feature_by_key_and_404s(client, filled):
    _, ids = filled
    f = client.get("/api/features/by-key", params={"model": MODEL, "layer": 1, "index": 2}).json()
    assert f["feature_id"] == ids["features"][2]
    missing = client.get("/api/features/by-key", params={"model": MODEL, "layer": 1, "index": 99})
    assert missing.status_code == 404 and "toy-model/L1/mlp_neuron/99" in missing.json()["error"]
    assert client.get("/api/features/999999").status_code == 404
    too_big = client.get("/api/features/99999999999999")
    assert too_big.status_code == 422 and too_big.json()["errors"][0]["parameter"] == "feature_id"


def test_security_headers_on_pages_and_api(client):
    for path in ("/", "/feature", "/api/models", "/static/feature.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "default-src 'self'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/_swagger/swagger-ui-bundle.js" in docs.text and "<script>" not in docs.text
    assert "script-src 'self';" in docs.headers["content-security-policy"]
    assert "/api/features" in client.get("/openapi.json").json()["paths"]


def test_web_sources_never_use_html_parsing_sinks():
    from autointerp.api.app import WEB

    for path in WEB.glob("*.js"):
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{path.name} uses {sink}"
    for path in WEB.glob("*.html"):
        assert "<script>" not in path.read_text(), f"{path.name} has an inline script"


def test_jobs_are_forbidden_without_a_configured_token(client):
    response = client.post("/api/jobs", json={"kind": "explain", "model": MODEL, "layer": 1})
    assert response.status_code == 403
    assert "AUTOINTERP_API_TOKEN" in response.json()["error"]


def test_jobs_need_the_right_bearer_token(filled, monkeypatch):
    db, _ = filled
    monkeypatch.setenv("AUTOINTERP_API_TOKEN", "s3cret-token")
    with TestClient(create_app(db.url)) as c:
        body = {"kind": "nonsense"}
        assert c.post("/api/jobs", json=body).status_code == 401
        assert c.post("/api/jobs", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/jobs", json=body, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        # Past the gate, the body is validated.
        response = c.post("/api/jobs", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert response.status_code == 422 and "kind must be one of" in response.json()["error"]


def test_job_list_shows_runs_with_progress(client, filled):
    _, ids = filled
    jobs = client.get("/api/jobs").json()
    assert [j["id"] for j in jobs] == [ids["run"]]
    assert jobs[0]["stats"] == {"done": 6, "total": 6, "failed": 0} and jobs[0]["status"] == "done"
    one = client.get(f"/api/jobs/{ids['run']}").json()
    assert one["kind"] == "explain" and one["active_here"] is False
    assert client.get("/api/jobs/424242").status_code == 404
