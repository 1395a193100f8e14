import pytest

ROUTES = [
    ("get", "/v1/base-models"),
    ("get", "/v1/datasets"),
    ("post", "/v1/datasets"),
    ("get", "/v1/datasets/ds_x"),
    ("delete", "/v1/datasets/ds_x"),
    ("get", "/v1/jobs"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs/job_x"),
    ("get", "/v1/jobs/job_x/events"),
    ("post", "/v1/jobs/job_x/cancel"),
    ("post", "/v1/jobs/job_x/pause"),
    ("post", "/v1/jobs/job_x/resume"),
    ("get", "/v1/models"),
    ("get", "/v1/models/mdl_x"),
    ("delete", "/v1/models/mdl_x"),
    ("post", "/v1/models/mdl_x/predict"),
    ("get", "/v1/models/mdl_x/export"),
    ("get", "/v1/experiments"),
    ("post", "/v1/experiments"),
    ("get", "/v1/experiments/exp_x"),
    ("post", "/v1/experiments/exp_x/cancel"),
    ("get", "/v1/jobs/job_x/checkpoints"),
    ("post", "/v1/models/mdl_x/evaluations"),
    ("get", "/v1/models/mdl_x/evaluations"),
    ("get", "/v1/evaluations/eval_x"),
    ("post", "/v1/predictions"),
    ("get", "/v1/predictions"),
    ("get", "/v1/predictions/pred_x"),
    ("delete", "/v1/predictions/pred_x"),
    ("get", "/v1/predictions/pred_x/output"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_valid_key(client, method, path):
    for headers in ({}, {"Authorization": "Bearer thaw_wrong"}, {"Authorization": "Basic abc"}):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert "Authorization: Bearer" in response.json()["detail"]


def test_every_v1_route_is_in_the_auth_table(client):
    documented = {
        (method, path)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method in item
        if path.startswith("/v1")
    }
    normalised = {
        (m, p.replace("{dataset_id}", "ds_x").replace("{job_id}", "job_x").replace("{model_id}", "mdl_x"))
        for m, p in ((m, p.replace("{experiment_id}", "exp_x")) for m, p in documented)
        for p in [p.replace("{evaluation_id}", "eval_x").replace("{prediction_id}", "pred_x")]
    }
    assert normalised == set(ROUTES)


def test_healthz_needs_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_base_models_lists_the_real_default_and_configured_entries(client, headers):
    items = {m["id"]: m for m in client.get("/v1/base-models", headers=headers).json()["items"]}
    assert items["minilm-l6"]["layers"] == 6 and items["minilm-l6"]["hidden_size"] == 384
    assert items["tiny-bert"]["layers"] == 2 and items["tiny-bert"]["hidden_size"] == 32
    assert "path" not in items["minilm-l6"]  # jobs name ids, never paths
