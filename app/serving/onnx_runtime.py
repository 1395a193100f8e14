"""Serving a model with all its weights through ONNX Runtime (`serving_backend: onnx`).

The model is exported as `GET /v1/models/{id}/export?format=onnx` exports it (exports/onnx.py: one
graph from token ids to the scores Thaw serves, calibration folded into the head), the graph's
transformer layers fused by ONNX Runtime's optimizer (attention, layer norm and GELU as single
kernels) and, with `serving_quantize: int8`, its MatMul weights dynamically quantized to int8
(activations quantized per batch at run time). The rule for which models use it: a model that
trained every weight is its own deployment, so it can run as one graph; models that share a base
encoder (head_only, adapters, lora) keep the torch deployment, whose one forward pass serves rows of
many of them at once (deployments.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from app.adaptation.artifact import read_card
from app.adaptation.exports.onnx import export_onnx
from app.serving.deployments import Deployment, Member, NotShareable, Row, ServingOptions, padded

log = logging.getLogger(__name__)


class OnnxDeployment(Deployment):
    """One model's graph in an ONNX Runtime session; the same contract as a torch deployment."""

    def __init__(self, folder: Path, graph: Path, options: ServingOptions) -> None:
        import onnxruntime

        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = options.threads or len(os.sched_getaffinity(0))
        session_options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(graph), session_options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.folder, self.graph, self.options = folder, graph, options
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = None  # nothing of torch's: no model can attach to this one
        self.members: dict[str, Member] = {}
        self.nbytes = graph.stat().st_size + sum(p.stat().st_size for p in graph.parent.glob(f"{graph.name}.data"))
        self._lock = threading.Lock()

    def add(self, member: Member, changes: dict | None = None) -> None:
        if changes:
            raise NotShareable("an ONNX deployment serves one model with all its weights")
        with self._lock:
            self.members[member.key] = member

    def remove(self, key: str) -> None:
        with self._lock:
            self.members.pop(key, None)
            if not self.members:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _forward(self, rows: list[Row]) -> torch.Tensor:
        ids, mask, types = padded(rows, self.tokenizer.pad_token_id)
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = (types if types is not None else torch.zeros_like(ids)).numpy()
        (scores,) = self.session.run(["probabilities"], feed)
        return torch.from_numpy(np.asarray(scores))


def load_onnx(model_id: str, directory: Path, base_model_path: Path, options: ServingOptions) -> OnnxDeployment:
    """Export, optimize and (int8) quantize the model into a folder of its own, then load it."""
    folder = Path(tempfile.mkdtemp(prefix=f"thaw-onnx-{model_id}-"))
    try:
        export_onnx(directory, base_model_path, folder)
        graph = optimized(folder / "model.onnx", AutoConfig.from_pretrained(base_model_path))
        if options.quantize == "int8":
            graph = quantized(graph)
        deployment = OnnxDeployment(folder, graph, options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    card = read_card(directory)
    deployment.add(
        Member(
            model_id,
            pooling=None,
            head=None,
            labels=card["labels"],
            max_length=card["max_length"],
            multi_label=card.get("task") == "multi_label",
            threshold=card.get("threshold"),
            nbytes=0,
        )
    )
    return deployment


def optimized(graph: Path, config: PretrainedConfig) -> Path:
    """The graph with ONNX Runtime's transformer fusions, for encoders its optimizer knows (BERT's
    layout: MiniLM, BERT, RoBERTa, MPNet's attention is left as it is); the graph itself otherwise."""
    from onnxruntime.transformers.optimizer import optimize_model

    out = graph.with_name("model.opt.onnx")
    try:
        model = optimize_model(
            str(graph),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=1,
        )
        model.save_model_to_file(str(out))
    except Exception as error:  # an encoder the fusions do not fit: serve the plain graph
        log.warning("ONNX Runtime could not optimize %s (%s); serving it unfused", graph, error)
        return graph
    return out


def quantized(graph: Path) -> Path:
    """Dynamic int8 quantization of the graph's MatMul weights (per-tensor, signed)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = graph.with_name("model.int8.onnx")
    quantize_dynamic(
        str(graph),
        str(out),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops have no shape inference
    )
    return out
