"""Padding-free reward training gives TRL's padded loss and gradients: the same pairs, the same order, the same
numbers within float tolerance, for a transformers model (packed row and unpadded sequences) and for InternLM2's
remote code (unpadded sequences)."""

import json

import pytest
import torch
from datasets import Dataset
from training_helpers import compose_config, synthetic_pairs, tiny_run, write_pairs
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from reward_transfer.conversations import encode_conversation
from reward_transfer.models import load_reward_model, reward_token_id
from reward_transfer.padding_free import (
    PaddingFreeCollator,
    PaddingFreeRewardTrainer,
    batch_tokens,
    packs_sequences,
)
from reward_transfer.tiny_internlm2 import build_tiny_internlm2
from reward_transfer.training import train_reward_model

pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def encoded_pairs(tokenizer, token: int | None) -> list[dict]:
    """Three pairs of very different lengths (so padding would be most of a padded batch)."""
    rows = synthetic_pairs(3, seed=3)
    rows[1]["accepted"] += " Indeed." * 40
    return [{"chosen_ids": encode_conversation(tokenizer, r["problem"], r["accepted"], None, token).input_ids,
             "rejected_ids": encode_conversation(tokenizer, r["problem"], r["rejected"], None, token).input_ids}
            for r in rows]


def loss_and_gradients(trainer, model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def compare(path, tmp_path, packed_too: bool) -> None:
    model, tokenizer = load_reward_model(str(path), device="cpu", dtype="float32")
    model.train()
    examples = encoded_pairs(tokenizer, reward_token_id(model))
    args = RewardConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to="none",
                        disable_dropout=True)
    dataset = Dataset.from_list(examples)
    padded = RewardTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=dataset,
                           data_collator=DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id))
    free = PaddingFreeRewardTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=dataset,
                                    data_collator=PaddingFreeCollator())
    expected_loss, expected_grads = loss_and_gradients(padded, model, padded.data_collator(examples))
    batch = PaddingFreeCollator()(examples)
    real, padded_size = batch_tokens(batch)
    assert real < padded_size / 2  # most of the padded batch would be padding
    for packed in (False, True) if packed_too else (False,):
        free.packed = packed
        loss, grads = loss_and_gradients(free, model, batch)
        assert loss == pytest.approx(expected_loss, abs=1e-5), f"packed={packed}"
        assert grads.keys() == expected_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected_grads[name], atol=1e-5, rtol=1e-4, msg=f"{name} packed={packed}")
    modes = 2 if packed_too else 1
    assert padded._total_train_tokens == real  # TRL counts real tokens, never padding
    assert free._total_train_tokens == modes * real


def test_transformers_model_packed_and_unpadded_equal_padded(tiny_models, tmp_path):
    compare(tiny_models["rm"], tmp_path, packed_too=True)


def test_internlm2_remote_code_unpadded_equals_padded(tmp_path):
    path = build_tiny_internlm2(tmp_path / "rm")
    model, _ = load_reward_model(str(path), device="cpu", dtype="float32")
    assert not packs_sequences(model)  # remote code never gets a packed row it cannot keep apart
    compare(path, tmp_path, packed_too=False)


def test_a_run_padding_free_trains_like_the_padded_run(tiny_models, tmp_path):
    """Through the stage function: the logged losses of the first steps agree, only the padding is gone."""
    data = write_pairs(tmp_path / "pairs", train=24)
    runs = {}
    for padding_free in (False, True):
        out = tmp_path / f"run-{padding_free}"
        cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], data, out, "train.max_steps=4",
                                                    "train.logging_steps=1", "train.disable_dropout=true",
                                                    f"train.padding_free={str(padding_free).lower()}"))
        runs[padding_free] = (train_reward_model(cfg), json.loads((out / "log_history.json").read_text()))
    (padded, padded_log), (free, free_log) = runs[False], runs[True]
    losses = [[entry["loss"] for entry in log if "loss" in entry] for log in (padded_log, free_log)]
    assert len(losses[0]) == 4 and losses[1] == pytest.approx(losses[0], abs=1e-4)
    assert free["tokens"] == padded["tokens"] and free["padded_tokens"] == padded["padded_tokens"]
    assert free["padding_free"] and free["padding_share"] == 0.0 < padded["padding_share"]
