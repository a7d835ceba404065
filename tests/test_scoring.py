"""The scoring engine: batched scores equal one-at-a-time scores, duplicates scored once, truncation counted,
broken models refused, and several processes under `accelerate launch` give the same scores in order."""

import json
import subprocess
import textwrap

import pytest
import torch
from conftest import free_port
from scoring_helpers import OFFLINE_ENV, REPO_ROOT

from reward_transfer.conversations import encode_conversation
from reward_transfer.errors import UserError
from reward_transfer.models import reward_token_id
from reward_transfer.scoring import (
    load_reward_model,
    score_conversations,
    score_pairs,
    score_pairs_with_stats,
)

PROBLEMS = ["What is 2+2?", "Compute 17 times 23, showing every step. " * 6, "x", "Sort the list [3, 1, 2]."]
ACCEPTED = ["4", "We have 17 * 23 = 391. " * 40, "\\boxed{1}", "print(sorted([3, 1, 2]))"]
REJECTED = ["5", "no", "It is " + "very " * 150 + "large.", "[3, 1, 2]"]


@pytest.fixture(scope="module")
def reward_model(tiny_models):
    return load_reward_model(str(tiny_models["rm"]), device="cpu")


@pytest.fixture(scope="module")
def internlm2_style_model(tmp_path_factory):
    """The remote-code stand-in for InternLM2-7B-reward: scores read at an appended reward token."""
    from reward_transfer.tiny_internlm2 import build_tiny_internlm2

    return load_reward_model(str(build_tiny_internlm2(tmp_path_factory.mktemp("internlm2"))), device="cpu")


def one_at_a_time(model, tokenizer, problem: str, answer: str, max_length: int = 1024) -> float:
    """The original method: one conversation per forward, no padding at all."""
    ids = encode_conversation(tokenizer, problem, answer, max_length, reward_token_id(model)).input_ids[:max_length]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)
                     ).logits[0, 0].item()


@pytest.mark.parametrize("family", ["reward_model", "internlm2_style_model"])
def test_batched_scores_equal_unpadded_single_forwards(family, request):
    model, tokenizer = request.getfixturevalue(family)
    lengths = [len(encode_conversation(tokenizer, p, a).input_ids) for p, a in zip(PROBLEMS, ACCEPTED + REJECTED,
                                                                                  strict=False)]
    assert max(lengths) > 10 * min(lengths)  # very different lengths end up in one batch
    chosen, rejected = score_pairs(model, tokenizer, PROBLEMS, ACCEPTED, REJECTED, batch_size=8)
    for i, problem in enumerate(PROBLEMS):
        assert chosen[i] == pytest.approx(one_at_a_time(model, tokenizer, problem, ACCEPTED[i]), abs=1e-4)
        assert rejected[i] == pytest.approx(one_at_a_time(model, tokenizer, problem, REJECTED[i]), abs=1e-4)
    chosen_1, rejected_1 = score_pairs(model, tokenizer, PROBLEMS, ACCEPTED, REJECTED, batch_size=1)
    assert chosen_1 == pytest.approx(chosen, abs=1e-4)
    assert rejected_1 == pytest.approx(rejected, abs=1e-4)


def test_scored_token_is_the_last_real_token(reward_model):
    model, tokenizer = reward_model
    # Same conversation with one more token at the end: a different score shows the end token is read.
    base = score_conversations(model, tokenizer, ["q", "q"], ["short", "a much longer answer " * 20]).scores
    extended = score_conversations(model, tokenizer, ["q", "q"], ["short!", "a much longer answer " * 20]).scores
    assert base[0] != pytest.approx(extended[0], abs=1e-6)
    assert base[1] == pytest.approx(extended[1], abs=1e-6)


def test_duplicate_conversations_are_scored_once(reward_model):
    model, tokenizer = reward_model
    problems = ["p1"] * 6 + ["p2"] * 2
    accepted = ["good"] * 6 + ["fine"] * 2
    rejected = ["bad1", "bad2", "bad3", "bad1", "bad2", "bad3", "good", "meh"]
    stats = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, batch_size=4, progress=False)
    assert stats.distinct == 7  # p1: good, bad1-3; p2: fine, good, meh
    assert stats.chosen[0] == stats.chosen[5]
    assert stats.rejected[0] == stats.rejected[3]
    # The same answer under another problem is another conversation.
    assert stats.rejected[6] != pytest.approx(stats.chosen[0], abs=1e-7)


def test_long_conversations_are_truncated_like_training_and_counted(reward_model):
    model, tokenizer = reward_model
    stats = score_pairs_with_stats(model, tokenizer, PROBLEMS, ACCEPTED, REJECTED, max_length=64, progress=False)
    expected = sum(encode_conversation(tokenizer, p, a, max_length=64).truncated
                   for p, a in {*zip(PROBLEMS, ACCEPTED, strict=True), *zip(PROBLEMS, REJECTED, strict=True)})
    assert stats.truncated == expected >= 2
    for i, problem in enumerate(PROBLEMS):
        assert stats.chosen[i] == pytest.approx(one_at_a_time(model, tokenizer, problem, ACCEPTED[i], 64), abs=1e-4)
        assert stats.rejected[i] == pytest.approx(one_at_a_time(model, tokenizer, problem, REJECTED[i], 64), abs=1e-4)


def test_non_finite_scores_are_refused(tiny_models):
    model, tokenizer = load_reward_model(str(tiny_models["rm"]), device="cpu")
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    with pytest.raises(UserError, match="non-finite"):
        score_pairs(model, tokenizer, PROBLEMS, ACCEPTED, REJECTED)


def test_accelerate_processes_share_the_work_and_gather_in_order(tiny_models, reward_model, tmp_path):
    model, tokenizer = reward_model
    problems, accepted, rejected = PROBLEMS * 3, ACCEPTED * 2 + ["other"] * 4, REJECTED[::-1] * 3
    expected_chosen, expected_rejected = score_pairs(model, tokenizer, problems, accepted, rejected)
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from reward_transfer.scoring import load_reward_model, process_state, score_pairs_with_stats
        state = process_state()
        model, tokenizer = load_reward_model({str(tiny_models["rm"])!r}, device=state.device)
        stats = score_pairs_with_stats(model, tokenizer, {problems!r}, {accepted!r}, {rejected!r}, batch_size=3)
        with open(sys.argv[1] + f"/scores-{{state.process_index}}.json", "w") as out:
            json.dump({{"chosen": stats.chosen, "rejected": stats.rejected, "world": state.num_processes,
                       "tokens": stats.tokens}}, out)
    """))
    # accelerate 1.15 starts one process for `--cpu --num_processes 2` unless MPI is installed; its torchrun
    # launcher (`--multi_gpu`) starts two, which then talk over gloo on this GPU-less machine.
    accelerate = REPO_ROOT / ".venv" / "bin" / "accelerate"
    done = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(tmp_path)],
                          cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"scores-{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert result["world"] == 2
        assert result["chosen"] == pytest.approx(expected_chosen, abs=1e-4)
        assert result["rejected"] == pytest.approx(expected_rejected, abs=1e-4)
    assert results[0]["tokens"] == results[1]["tokens"]  # totals gathered from both shards
