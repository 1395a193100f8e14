import random
from collections import Counter

import torch

from app.adaptation.data import Batches, LabeledTexts, stratified_split


def test_stratified_split_holds_out_each_class_in_proportion():
    data = LabeledTexts([f"t{i}" for i in range(300)], ["a"] * 200 + ["b"] * 90 + ["c"] * 10)
    train, held = stratified_split(data, 0.1, seed=3)
    assert Counter(held.labels) == {"a": 20, "b": 9, "c": 1}
    assert set(train.texts).isdisjoint(held.texts)
    assert len(train) + len(held) == 300
    assert stratified_split(data, 0.1, seed=3) == (train, held)  # reproducible
    assert stratified_split(data, 0.1, seed=4)[1] != held


def test_a_class_with_one_example_stays_in_train():
    data = LabeledTexts(["a", "b", "c", "d"], ["x", "x", "x", "y"])
    train, held = stratified_split(data, 0.5, seed=0)
    assert "y" in train.labels and "y" not in held.labels


def test_training_batches_cover_every_example_once_with_little_padding():
    rng = random.Random(0)
    ids = [[1] * rng.randint(1, 40) for _ in range(1000)]
    batches = Batches(ids, list(range(1000)), batch_size=16, pad_id=0)
    seen = []
    padding = 0
    for batch in batches.training_order(random.Random(1)):
        seen.extend(batch.indices)
        assert batch.input_ids.shape[1] == max(len(ids[i]) for i in batch.indices)  # padded to own max
        padding += int((batch.attention_mask == 0).sum())
        assert torch.equal(batch.labels, torch.tensor(batch.indices))
    assert sorted(seen) == list(range(1000))
    real = sum(len(x) for x in ids)
    assert padding / real < 0.05  # length grouping: random batches would pad ~50%


def test_collate_pads_with_the_pad_id_and_masks_it():
    batch = Batches([[5, 6, 7], [8]], None, 2, pad_id=9).collate([0, 1])
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels is None
