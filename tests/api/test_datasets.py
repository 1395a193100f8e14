from pathlib import Path

import pytest

from app.config import Settings


def upload(client, headers, content: bytes, filename="data.csv", **form):
    return client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=form)


def stored_files(settings: Settings) -> list[Path]:
    root = settings.resolved_artifacts_dir / "datasets"
    return sorted(root.glob("*")) if root.exists() else []


def test_upload_get_list_delete(client, headers, settings):
    response = upload(client, headers, b"text,label\ngood,pos\nbad,neg\nfine,pos\n", name="reviews")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "reviews" and body["rows"] == 3 and body["format"] == "csv"
    assert body["columns"] == ["text", "label"] and body["label_counts"] == {"neg": 1, "pos": 2}
    assert client.get(f"/v1/datasets/{body['id']}", headers=headers).json() == body
    listing = client.get("/v1/datasets", headers=headers).json()
    assert listing["total"] == 1 and listing["items"] == [body]
    stored = [f.name for f in stored_files(settings)]
    assert stored == [f"{body['id']}.jsonl", f"{body['id']}.sha256"]  # the rows and their checksum
    assert client.delete(f"/v1/datasets/{body['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/datasets/{body['id']}", headers=headers).status_code == 404
    assert stored_files(settings) == []


def test_a_table_without_labels_is_an_unlabeled_dataset(client, headers):
    body = upload(client, headers, b'{"text": "some domain text"}\n', filename="u.jsonl").json()
    assert body["label_field"] is None and body["label_counts"] is None and body["format"] == "jsonl"


def test_other_columns_can_be_named(client, headers):
    body = upload(
        client,
        headers,
        b"question\tcoarse\nwho?\tHUM\n",
        filename="q.tsv",
        text_field="question",
        label_field="coarse",
    ).json()
    assert body["text_field"] == "question" and body["label_counts"] == {"HUM": 1}


@pytest.mark.parametrize(
    ("content", "form", "message"),
    [
        (b"", {}, "data.csv: the file is empty"),
        (b"sentence,label\nhi,x\n", {}, "no text column 'text'; the columns are: sentence, label"),
        (b"text,label\nok,x\n,y\n", {}, "empty text in column 'text' on line(s) 3"),
        (b"text,label\nok,x\n", {"label_field": "topic"}, "no label column 'topic'"),
        (b"text,label\n\xe9t\xe9,x\n", {}, "not UTF-8 text"),
    ],
)
def test_bad_uploads_are_422_and_create_nothing(client, headers, settings, content, form, message):
    response = upload(client, headers, content, **form)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert client.get("/v1/datasets", headers=headers).json()["total"] == 0
    assert stored_files(settings) == []


def test_oversized_upload_is_413_and_creates_nothing(client, headers, settings):
    client.app.state.settings = settings.model_copy(update={"max_upload_bytes": 1000})
    response = upload(client, headers, b"text,label\n" + b"some words,x\n" * 200)
    assert response.status_code == 413
    assert "over the limit of 1000 bytes" in response.json()["detail"]
    assert client.get("/v1/datasets", headers=headers).json()["total"] == 0
    assert stored_files(settings) == []


def test_another_tenants_dataset_is_not_found(client, headers, other_headers):
    dataset = upload(client, headers, b"text,label\na,x\nb,y\n").json()
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=other_headers).status_code == 404
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=other_headers).status_code == 404
    assert client.get("/v1/datasets", headers=other_headers).json()["total"] == 0
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=headers).status_code == 200


def test_pagination(client, headers):
    ids = [upload(client, headers, b"text\nx\n", name=f"d{i}").json()["id"] for i in range(5)]
    page = client.get("/v1/datasets?limit=2&offset=1", headers=headers).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [d["id"] for d in page["items"]] == list(reversed(ids))[1:3]  # newest first
