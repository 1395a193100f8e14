"""An auxiliary masked-LM task on the main task's own text (`tasks[]` with objective masked_lm and
no data): at every main step, L = L_main + weight * L_lm on the same batch, as in Chronopoulou et
al. 2019 (SiATL), with BERT's masked-LM loss in place of their LSTM's next-word loss."""

from __future__ import annotations

import torch

from app.adaptation.masked_lm import Masking, lm_head
from app.adaptation.model import TextClassifier
from app.adaptation.objectives import OBJECTIVES, ObjectiveContext, StepInputs
from app.adaptation.seeding import step_generator
from app.schemas.signal import AuxiliaryTask


class MainTextMaskedLM:
    needs_inputs = True
    main_weight = 1.0

    def __init__(self, tasks: list[AuxiliaryTask], context: ObjectiveContext) -> None:
        self.tasks, self.seed, self.masking = tasks, context.spec.training.seed, Masking(context.tokenizer)
        lm_head(context.model)

    def loss(self, model: TextClassifier, inputs: StepInputs) -> torch.Tensor:
        total = inputs.logits.new_zeros(())
        for offset, task in enumerate(self.tasks):
            generator = step_generator(self.seed + offset, inputs.step)
            total = total + task.weight * self.masking.loss(model, inputs.batch, task.mask_rate, generator)
        return total


@OBJECTIVES.register("masked_lm")
def masked_lm(context: ObjectiveContext) -> MainTextMaskedLM | None:
    tasks = [t for t in context.spec.tasks if t.objective == "masked_lm" and t.data is None]
    return MainTextMaskedLM(tasks, context) if tasks else None
