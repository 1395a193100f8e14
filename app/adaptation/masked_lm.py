"""Masked-LM pieces (Devlin et al. 2019): token masking and an output layer tied to the input
embeddings, for encoders shipped without their pretraining LM head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from app.adaptation.architectures import token_vectors
from app.adaptation.data import token_batches
from app.adaptation.precision import autocast
from app.adaptation.seeding import step_generator

if TYPE_CHECKING:
    from app.schemas.spec import JobSpec

IGNORE = -100  # cross_entropy's ignore_index: positions that were not masked


def mask_tokens(
    input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked inputs, targets): `rate` of the maskable tokens become [MASK]; only they are scored."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < rate) & maskable.bool()
    targets = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    return torch.where(chosen, torch.full_like(input_ids, mask_id), input_ids), targets


def tied_lm_logits(encoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits from the last layer through the transposed input embedding matrix."""
    return hidden @ token_vectors(encoder).T


def masked_lm_loss(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = tied_lm_logits(encoder, hidden)
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def maskable_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    """Real tokens that are not special ([CLS], [SEP], [PAD], ...): the ones masking may choose."""
    special = torch.isin(input_ids, torch.tensor(special_ids, dtype=input_ids.dtype, device=input_ids.device))
    return attention_mask.bool() & ~special


class TiedLMHead(nn.Module):
    """A masked-LM head for an encoder shipped without one (as BERT's: dense, GELU, LayerNorm, then the
    input embeddings transposed, plus a bias). The transform starts as the identity and the bias at
    zero, so the first steps score tokens by their similarity to the encoder's last layer instead of
    by random weights, and do not push noise into the encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.dense = nn.Linear(hidden, hidden)
        nn.init.eye_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)
        # DistilBERT and ModernBERT configs name no epsilon; BERT's is the usual one.
        self.norm = nn.LayerNorm(hidden, eps=getattr(encoder.config, "layer_norm_eps", 1e-12))
        self.bias = nn.Parameter(torch.zeros(encoder.config.vocab_size))
        self._encoder = [encoder]  # a list, so the tied embeddings are not registered twice

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.gelu(self.dense(hidden))) @ token_vectors(self._encoder[0]).T + self.bias


def masked_lm_step_loss(
    encoder: nn.Module, head: TiedLMHead, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the masked positions only; the vocabulary logits are computed for them alone."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    chosen = targets != IGNORE
    if not chosen.any():
        return hidden.sum() * 0.0  # nothing masked in this batch (very short texts): no signal, no error
    return nn.functional.cross_entropy(head(hidden[chosen]).float(), targets[chosen])


def lm_head(model: nn.Module) -> TiedLMHead:
    """The model's tied masked-LM head among its training-only heads, made on first use."""
    if "lm" not in model.extra_heads:
        device = model.encoder.get_input_embeddings().weight.device
        model.extra_heads["lm"] = TiedLMHead(model.encoder).to(device)
    return model.extra_heads["lm"]


def masked_batch_loss(
    encoder: nn.Module,
    head: TiedLMHead,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: list[int],
    mask_id: int,
    rate: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mask `rate` of a batch's real tokens and score the model's guesses of them (on the ids' device)."""
    maskable = maskable_positions(input_ids, attention_mask, special_ids)
    masked, targets = mask_tokens(input_ids.cpu(), maskable.cpu(), mask_id, rate, generator)
    device = input_ids.device
    return masked_lm_step_loss(encoder, head, masked.to(device), attention_mask, targets.to(device))


class Masking:
    """Masked-LM loss of a classifier's batches through its tied LM head (auxiliary tasks)."""

    def __init__(self, tokenizer: Any) -> None:
        self.special_ids, self.mask_id = tokenizer.all_special_ids, tokenizer.mask_token_id

    def loss(self, model: nn.Module, batch: Any, rate: float, generator: torch.Generator) -> torch.Tensor:
        device = model.encoder.get_input_embeddings().weight.device
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        return masked_batch_loss(
            model.encoder, lm_head(model), ids, mask, self.special_ids, self.mask_id, rate, generator
        )


# ---- a masked-LM run: a stage's domain adaptation, through the trainer ------------------------------


class MaskedLanguageModel(nn.Module):
    """An encoder with a tied masked-LM head, as the trainer trains it: the head sits among the
    model's training-only heads (the `new` layer group), so AdamW, the lr schedule, clipping,
    progress, pausing and checkpoints are those of every other run."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_layers: int = encoder.config.num_hidden_layers
        self.extra_heads = nn.ModuleDict()
        lm_head(self)


class MaskedLMLoss:
    """The StepLoss (trainer.py) of a masked-LM run: mask `rate` of each batch's real tokens, with
    masks drawn from the step's own generator (the same after a resume), and score the guesses."""

    def __init__(
        self, model: MaskedLanguageModel, tokenizer: Any, job: JobSpec, rate: float, dtype: torch.dtype
    ) -> None:
        self.model, self.tokenizer, self.masking = model, tokenizer, Masking(tokenizer)
        self.rate, self.dtype, self.training = rate, dtype, job.training
        self.device = model.encoder.get_input_embeddings().weight.device

    def batches(self, train: list[str], validation: list[str] | None) -> tuple[Any, Any]:
        cfg = self.training
        held = None if validation is None else token_batches(self.tokenizer, validation, cfg.max_length, None, 64)
        return token_batches(self.tokenizer, train, cfg.max_length, None, cfg.batch_size), held

    def loss(self, batch: Any, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss = self._loss(batch, step_generator(self.training.seed, step))
        return loss, loss.detach()

    @torch.no_grad()
    def evaluate(self, batches: Any, gold: list | None = None) -> dict[str, float]:
        """The mean masked-LM loss over `batches`, with the same masks every time it is measured."""
        seed = self.training.seed
        batches_in_order = enumerate(batches.by_length())
        losses = [self._loss(batch, step_generator(seed, -1 - i)).item() for i, batch in batches_in_order]
        return {"masked_lm_loss": sum(losses) / len(losses)}

    def _loss(self, batch: Any, generator: torch.Generator) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            loss = self.masking.loss(self.model, batch, self.rate, generator)
        return loss.float()
