"""SetFit's contrastive pairs (Tunstall et al. 2022): the pairs SetFit makes, its loss, and a run that
pulls the vectors of one class together on a tiny random BERT; the setfit recipe end to end."""

from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer

from app.adaptation import SilentCallbacks, TaskData, adapt, load_classifier, predict_proba
from app.adaptation.contrastive import contrastive_run, cosine_similarity_loss, sentence_pairs
from app.adaptation.data import token_batches
from app.adaptation.single import save_single
from tests.adaptation.helpers import classifier, job
from tests.utils.data import sentiment


def test_each_iteration_pairs_every_row_once_with_its_class_and_once_with_another():
    labels = ["a", "a", "a", "b", "b", "c"]
    pairs = sentence_pairs(labels, iterations=5, seed=0)
    assert len(pairs) == 2 * 5 * len(labels)
    assert Counter(first for first, _, _ in pairs) == {i: 10 for i in range(len(labels))}
    for first, second, target in pairs:
        if target == 1.0:
            assert labels[first] == labels[second]
            assert first != second or labels.count(labels[first]) == 1  # a class of one row pairs it with itself
        else:
            assert target == 0.0 and labels[first] != labels[second]


def test_the_loss_is_the_squared_error_of_the_cosine():
    u, v = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # cosines 1 and 0 against targets 0 and 0: mean of 1 and 0
    assert cosine_similarity_loss(u, v, torch.tensor([0.0, 0.0])).item() == pytest.approx(0.5)
    assert cosine_similarity_loss(u, v, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0)


def class_separation(model, tokenizer, data) -> float:
    """Mean cosine of same-class pairs minus that of different-class pairs."""
    model.eval()
    vectors = torch.empty(len(data), model.encoder.config.hidden_size)
    with torch.no_grad():
        for batch in token_batches(tokenizer, data.texts, 64, None, 32).by_length():
            vectors[batch.indices] = model.pooled(batch.input_ids, batch.attention_mask)
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    cosine = vectors @ vectors.T
    same = torch.tensor([[a == b for b in data.labels] for a in data.labels])
    off = ~torch.eye(len(data), dtype=torch.bool)
    return (cosine[same & off].mean() - cosine[~same].mean()).item()


def test_a_pair_run_pulls_each_class_together(tiny_model_dir):
    data = sentiment(48, seed=3)
    spec = job(recipe="setfit", contrastive={"pairs_per_example": 10, "learning_rate": 1e-3})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = classifier(tiny_model_dir, spec)
    before = class_separation(model, tokenizer, sentiment(60, seed=4))
    report, trained = contrastive_run(spec, model, tokenizer, data, SilentCallbacks(), 1.0, None)
    after = class_separation(model, tokenizer, sentiment(60, seed=4))  # rows it never saw
    assert report["pairs"] == 2 * 10 * 48 and report["steps"] == 2 * 10 * 48 // 16
    assert after > before + 0.1
    assert (
        all(not name.startswith("head.") for name in trained) and "encoder.embeddings.word_embeddings.weight" in trained
    )


def test_the_setfit_recipe_tunes_the_encoder_then_the_head_and_saves_it_whole(tiny_model_dir, tmp_path):
    data = TaskData(sentiment(32, seed=1), None, sentiment(60, seed=2))
    spec = job(recipe="setfit", contrastive={"pairs_per_example": 5}, training={"epochs": 20})
    assert spec.data.validation_fraction == 0 and spec.optimization.train == "head_only"
    result = adapt(spec, data, tiny_model_dir)
    assert result.metrics["contrastive"]["pairs"] == 2 * 5 * 32
    assert result.trainable_params == result.total_params  # the pairs trained the encoder, the head then
    save_single(result, spec, tmp_path)
    loaded = load_classifier(tmp_path)  # every weight: the encoder is no longer the base model's
    texts = data.test.texts[:10]
    assert torch.allclose(
        loaded.probabilities(texts), predict_proba(result.model, result.tokenizer, texts, 64), atol=1e-5
    )
