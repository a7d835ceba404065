"""InternLM2's real remote code under transformers 5: the stand-in carries each published trait, the loader copes.

The stand-in (`reward_transfer.tiny_internlm2`) is laid out and coded as `internlm/internlm2-7b-reward` and the
InternLM2 SFT checkpoints are: non-persistent rotary buffers computed in `__init__`, `rope_scaling["type"]` read
in `_init_rope`, `DynamicCache.from_legacy_cache` under `use_cache=True`, list `_tied_weights_keys`, its own
`get_scores`. The reference below builds it as transformers 4 did (eagerly, no meta device), so it shares none
of the loader's code.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reward_transfer.models import load_causal_lm, load_reward_model, load_tokenizer
from reward_transfer.scoring import score_conversations
from reward_transfer.tiny_internlm2 import (
    IM_TOKENS,
    PLACEHOLDERS,
    RENAMED,
    REWARD_TOKEN,
    build_tiny_internlm2,
    modeling_internlm2,
)
from reward_transfer.tiny_internlm2.configuration_internlm2 import InternLM2Config

pytestmark = pytest.mark.usefixtures("single_cpu_thread")
ROPES = {"plain_rope": None, "dynamic_rope": {"type": "dynamic", "factor": 2.0}}
PROBLEMS = ["What is 2 + 2?", "Sort [3, 1, 2].", "Compute 17 \\times 23."]
ANSWERS = ["The final answer is \\boxed{4}.", "def solve():\n    print(sorted([3, 1, 2]))", "It is 391. " * 30]


@pytest.fixture(scope="module", params=list(ROPES), ids=list(ROPES))
def reward_checkpoint(request, tmp_path_factory) -> Path:
    return build_tiny_internlm2(tmp_path_factory.mktemp(request.param), rope_scaling=ROPES[request.param])


def reference(path: Path, architecture: str = "InternLM2ForRewardModel") -> torch.nn.Module:
    """The checkpoint as transformers 4 built it: constructed eagerly with its config.json as written, weights loaded."""
    written = json.loads((path / "config.json").read_text())
    settings = {k: v for k, v in written.items() if k not in ("architectures", "auto_map", "model_type", "torch_dtype")}
    config = InternLM2Config(**copy.deepcopy(settings))
    config.rope_scaling = written["rope_scaling"]
    config.use_cache = False
    model = getattr(modeling_internlm2, architecture)(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval()


def conversations() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in zip(PROBLEMS, ANSWERS,
                                                                                                strict=True)]


def test_scores_equal_the_checkpoints_own_get_scores_on_every_load(reward_checkpoint):
    own = reference(reward_checkpoint)
    expected = own.get_scores(load_tokenizer(str(reward_checkpoint), trust_remote_code=True), conversations())
    loads = []
    for _ in range(2):
        model, tokenizer = load_reward_model(str(reward_checkpoint), device="cpu")
        loads.append(score_conversations(model, tokenizer, PROBLEMS, ANSWERS, progress=False).scores)
    np.testing.assert_allclose(loads[0], expected, atol=1e-4)
    np.testing.assert_array_equal(loads[0], loads[1])


def test_rotary_buffers_are_recomputed_after_loading(reward_checkpoint):
    model, _ = load_reward_model(str(reward_checkpoint), device="cpu")
    expected = dict(reference(reward_checkpoint).named_buffers())
    loaded = dict(model.named_buffers())
    assert {name for name in expected if "rotary_emb" in name} == {name for name in loaded if "rotary_emb" in name}
    for name, buffer in expected.items():
        torch.testing.assert_close(loaded[name], buffer, rtol=0, atol=0, msg=name)


def test_rotary_buffers_are_recomputed_when_the_reward_class_lives_in_another_file(tmp_path):
    """A reward wrapper in its own remote file imports the backbone: the rotary classes are defined in a module
    other than the model class's, and must be restored all the same."""
    path = build_tiny_internlm2(tmp_path / "wrapped", rope_scaling=ROPES["dynamic_rope"], reward_wrapper=True)
    model, tokenizer = load_reward_model(str(path), device="cpu")
    assert type(model).__name__ == "InternLM2RewardWrapper"
    expected = reference(path)
    for name, buffer in expected.named_buffers():
        torch.testing.assert_close(dict(model.named_buffers())[name], buffer, rtol=0, atol=0, msg=name)
    own = expected.get_scores(load_tokenizer(str(path), trust_remote_code=True), conversations())
    np.testing.assert_allclose(score_conversations(model, tokenizer, PROBLEMS, ANSWERS, progress=False).scores,
                               own, atol=1e-4)


def test_rope_scaling_reaches_the_remote_code_in_its_legacy_form(reward_checkpoint):
    model, _ = load_reward_model(str(reward_checkpoint), device="cpu")
    rotary = model.model.layers[0].attention.rotary_emb
    scaled = ROPES["dynamic_rope"] if "dynamic" in reward_checkpoint.name else None
    expected_class = "InternLM2DynamicNTKScalingRotaryEmbedding" if scaled else "InternLM2RotaryEmbedding"
    assert type(rotary).__name__ == expected_class
    assert (scaled is None) == (model.config.rope_scaling is None)


def test_scoring_never_builds_the_removed_legacy_cache(reward_checkpoint):
    model, tokenizer = load_reward_model(str(reward_checkpoint), device="cpu")
    model.config.use_cache = True  # as the checkpoint's config.json says; the remote code would then crash
    with pytest.raises(AttributeError, match="from_legacy_cache"):
        model(input_ids=torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 3, dtype=torch.long))
    scores = score_conversations(model, tokenizer, PROBLEMS[:1], ANSWERS[:1], progress=False).scores
    assert np.isfinite(scores).all()


def sentencepiece_ids(path: Path) -> dict[str, int]:
    """The ids the checkpoint's own SentencePiece model gives its chat and reward tokens (the ground truth)."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(path / "tokenizer.model"))
    return {RENAMED.get(piece, piece): processor.piece_to_id(piece) for piece in PLACEHOLDERS}


def test_special_token_ids_survive_load_save_load(reward_checkpoint, tmp_path):
    expected = sentencepiece_ids(reward_checkpoint)
    assert set(expected) == {*IM_TOKENS, REWARD_TOKEN}
    first = load_tokenizer(str(reward_checkpoint), trust_remote_code=True)
    assert type(first).__name__ == "InternLM2Tokenizer"  # the fast conversion breaks on transformers 5
    assert {token: first.convert_tokens_to_ids(token) for token in expected} == expected
    assert expected[REWARD_TOKEN] == json.loads((reward_checkpoint / "config.json").read_text())["reward_token_id"]
    first.save_pretrained(tmp_path)
    for name in ("tokenization_internlm2.py", "tokenization_internlm2_fast.py"):  # as merging copies remote code
        (tmp_path / name).write_text((reward_checkpoint / name).read_text())
    again = load_tokenizer(str(tmp_path), trust_remote_code=True)
    assert {token: again.convert_tokens_to_ids(token) for token in expected} == expected
    text = first.apply_chat_template(conversations()[0], tokenize=False)
    ids = first(text, add_special_tokens=False)["input_ids"]
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert ids.count(expected["<|im_end|>"]) == 2 and ids[0] == first.bos_token_id and max(ids) < first.vocab_size


def test_sft_checkpoint_loads_as_causal_lm_and_as_new_head_reward_model(tmp_path):
    path = build_tiny_internlm2(tmp_path / "sft", kind="causal_lm", rope_scaling=ROPES["dynamic_rope"])
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = reference(path, "InternLM2ForCausalLM")(input_ids=ids).logits
    lm = load_causal_lm(str(path), device="cpu", trust_remote_code=True)
    torch.testing.assert_close(lm(input_ids=ids, use_cache=False).logits, expected, rtol=1e-5, atol=1e-5)
    model, _ = load_reward_model(str(path), device="cpu", init="causal_lm_new_head")
    assert type(model).__name__ == "InternLM2ForSequenceClassification" and model.score.out_features == 1
    torch.testing.assert_close(model.model.layers[0].attention.rotary_emb.inv_freq,
                               lm.model.layers[0].attention.rotary_emb.inv_freq, rtol=0, atol=0)
