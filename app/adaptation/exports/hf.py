"""`format=hf`: a Hugging Face folder that `AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)` loads, giving the logits Thaw serves.

    config.json         the base encoder's config, plus labels, `auto_map` and `thaw` (pooling, head,
                        adapter places, max_length, threshold)
    model.safetensors   every weight: the encoder (LoRA merged in), adapters, pooling and head
    modeling_thaw.py    the model class (torch and transformers only)
    tokenizer files     the base model's tokenizer
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from safetensors.torch import save_file

from app.adaptation.artifact import load_classifier, read_card
from app.adaptation.exports.merge import adapter_modules, merge_lora

MODELING = Path(__file__).with_name("modeling_thaw.py")
CLASS = "ThawForSequenceClassification"


def export_hf(directory: Path, base_model_path: Path | None, out: Path) -> None:
    loaded = load_classifier(directory, base_model_path)
    model, card = loaded.model, read_card(directory)
    merge_lora(model.encoder)
    config = copy.deepcopy(model.encoder.config)
    config.architectures = [CLASS]
    config.auto_map = {"AutoModelForSequenceClassification": f"{MODELING.stem}.{CLASS}"}
    config.id2label = dict(enumerate(loaded.labels))
    config.label2id = {label: index for index, label in enumerate(loaded.labels)}
    config.problem_type = "multi_label_classification" if loaded.multi_label else "single_label_classification"
    adapters = card["model"].get("adapters")
    config.thaw = {
        "pooling": card["model"]["pooling"],
        "head": card["model"]["head"],
        "head_hidden": card["model"]["head_hidden"],
        "num_layers": model.num_layers,
        "adapters": {"size": adapters["size"], "modules": adapter_modules(model.encoder)} if adapters else None,
        "max_length": loaded.max_length,
        "threshold": loaded.threshold,
        "base_model": card.get("base_model"),
    }
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    weights = {
        name: tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if name.startswith(("encoder.", "pooling.", "head."))
    }
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(MODELING, out / MODELING.name)
    loaded.tokenizer.save_pretrained(out)
