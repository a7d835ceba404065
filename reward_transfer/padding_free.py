"""Padding-free reward training: a micro-batch's chosen and rejected sequences without padding tokens.

TRL's `RewardTrainer` pads every micro-batch to its longest sequence (it has no packing mode). Here the collator
concatenates the sequences in TRL's order (all chosen, then all rejected) and records their lengths, and
`PaddingFreeRewardTrainer` scores them one of two ways, then hands the rewards to TRL's own loss and metrics:

- packed: one row with position ids restarting at each sequence; transformers' own models then keep sequences
  apart (variable-length flash attention, or a block-diagonal mask) and the head's output is read at each end;
- unpadded: each sequence through the model on its own. Remote code (InternLM2) has no packed-sequence entry
  point short of patching its attention, and without a variable-length kernel this is also the cheaper way:
  attention costs the sum of each length squared instead of the packed row's length squared.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from trl import RewardTrainer

from reward_transfer.models import reward_head_name, unwrap_model

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class PaddingFreeCollator:
    """Concatenate each micro-batch's sequences (chosen ones first, as TRL's collator orders them)."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [example["chosen_ids"] for example in examples] + [example["rejected_ids"] for example in examples]
        lengths = torch.tensor([len(sequence) for sequence in sequences])
        batch = {
            "input_ids": torch.tensor([token for sequence in sequences for token in sequence]).unsqueeze(0),
            "position_ids": torch.cat([torch.arange(length) for length in lengths.tolist()]).unsqueeze(0),
            "sequence_lengths": lengths,
        }
        if "margin" in examples[0]:
            batch["margin"] = torch.tensor([example["margin"] for example in examples], dtype=torch.float)
        return batch


def batch_tokens(inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Real tokens of a micro-batch, and the tokens it holds padded (TRL's layout: every row as long as the longest)."""
    if "sequence_lengths" in inputs:
        lengths = inputs["sequence_lengths"]
        return int(lengths.sum()), int(lengths.max()) * len(lengths)
    mask = inputs["attention_mask"]
    return int(mask.sum()), mask.numel()


def packs_sequences(model: torch.nn.Module) -> bool:
    """Whether one packed row is the cheaper way for this model: a transformers model (remote code has no
    packed-sequence support) whose attention runs variable-length sequences without a dense mask."""
    base = unwrap_model(model)
    native = type(base).__module__.startswith("transformers.")
    return native and getattr(base.config, "_attn_implementation", None) in VARLEN_ATTENTION


@contextmanager
def _head_outputs(model: torch.nn.Module):
    """Collect the reward head's per-token output during a forward (the model itself pools one position per row)."""
    outputs: list[torch.Tensor] = []
    head = getattr(unwrap_model(model), reward_head_name(model))
    handle = head.register_forward_hook(lambda _module, _inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def sequence_rewards(model: torch.nn.Module, inputs: dict[str, torch.Tensor], packed: bool) -> torch.Tensor:
    """The reward of each concatenated sequence, shape [sequences, 1]."""
    input_ids, lengths = inputs["input_ids"], inputs["sequence_lengths"]
    if packed:
        with _head_outputs(model) as outputs:
            model(input_ids=input_ids, position_ids=inputs["position_ids"], use_cache=False)
        ends = lengths.cumsum(0) - 1
        return outputs[-1].reshape(input_ids.shape[1], -1)[ends, :1]
    rewards = []
    for sequence in input_ids[0].split(lengths.tolist()):
        sequence = sequence.unsqueeze(0)
        logits = model(input_ids=sequence, attention_mask=torch.ones_like(sequence), use_cache=False).logits
        rewards.append(logits.reshape(1, -1)[:, :1])
    return torch.cat(rewards)


class PaddingFreeRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer fed by `PaddingFreeCollator`: the same loss, metrics and token counts, no padding."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packed = packs_sequences(self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = sequence_rewards(model, inputs, self.packed)
        # TRL's compute_loss calls model(**inputs) and reads `.logits` and `attention_mask.sum()` (the tokens seen):
        # give it the rewards already computed and the real token count.
        scored = {"attention_mask": inputs["sequence_lengths"].sum()}
        if "margin" in inputs:
            scored["margin"] = inputs["margin"]
        return super().compute_loss(lambda **_: SimpleNamespace(logits=rewards), scored, return_outputs,
                                    num_items_in_batch)
