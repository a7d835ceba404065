"""The scoring engine: batched scores equal one-at-a-time scores, duplicates scored once, truncation counted,
broken models refused, and several processes under `accelerate launch` give the same scores in order."""

import json
import subprocess
import textwrap

import pytest
import torch
from conftest import free_port
from scoring_helpers import OFFLINE_ENV, REPO_ROOT

from reward_transfer.conversations import CUT_ANSWER, CUT_PROMPT, encode_conversation, encode_for_scoring
from reward_transfer.errors import UserError
from reward_transfer.models import reward_token_id
from reward_transfer.scoring import (
    load_reward_model,
    score_conversations,
    score_pairs,
    score_pairs_with_stats,
    token_budget_batches,
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


def one_at_a_time(model, tokenizer, problem: str, answer: str) -> float:
    """The original method: one conversation per forward, no padding at all (within the model's context)."""
    budget = model.config.max_position_embeddings
    return unpadded(model, encode_for_scoring(tokenizer, problem, answer, budget, reward_token_id(model)).input_ids)


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


def test_a_prompt_longer_than_the_budget_loses_its_start_never_an_answer(reward_model):
    """The original scored whole conversations; a budget that still cuts cuts the start of the prompt. A prompt
    alone longer than the budget once left both sides as the same prompt prefix (a tie, and margin 0 for active
    learning): no pair may be scored on identical inputs."""
    model, tokenizer = reward_model
    problems = ["Read this long statement carefully. " * 60, "What is 2+2?"]
    accepted, rejected = ["The answer is \\boxed{4}.", "4"], ["The answer is \\boxed{5}.", "5"]
    stats = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, max_length=64, progress=False)
    assert stats.cuts == {"prompt_start": 1, "answer_start": 0} and stats.identical_inputs == 0
    assert stats.chosen[0] != stats.rejected[0]
    for answer, score in ((accepted[0], stats.chosen[0]), (rejected[0], stats.rejected[0])):
        encoded = encode_for_scoring(tokenizer, problems[0], answer, 64, reward_token_id(model))
        assert encoded.cut == CUT_PROMPT and len(encoded.input_ids) <= 64
        assert tokenizer.decode(encoded.input_ids).rstrip().endswith(answer + tokenizer.eos_token)
        assert score == pytest.approx(unpadded(model, encoded.input_ids), abs=1e-4)
    # Without a budget the model's context holds the whole conversation.
    whole = score_pairs_with_stats(model, tokenizer, problems, accepted, rejected, progress=False)
    assert whole.budget == model.config.max_position_embeddings and not any(whole.cuts.values())
    assert whole.cut_summary() == {"length_budget": whole.budget, "pairs_cut": {"prompt_start": 0, "answer_start": 0},
                                   "pairs_scored_on_identical_inputs": 0}


def test_an_answer_longer_than_the_budget_keeps_its_end_and_the_reward_token(internlm2_style_model):
    model, tokenizer = internlm2_style_model
    answer = "Step one. " * 80 + "So the answer is 391."
    encoded = encode_for_scoring(tokenizer, "Compute 17 times 23.", answer, 48, reward_token_id(model))
    assert encoded.cut == CUT_ANSWER and len(encoded.input_ids) <= 48
    assert encoded.input_ids[-1] == reward_token_id(model)
    assert "So the answer is 391." in tokenizer.decode(encoded.input_ids)


def test_batches_hold_at_most_the_token_budget_longest_first():
    lengths = [10, 900, 40, 300, 300, 20]
    batches = token_budget_batches(lengths, batch_size=4, max_batch_tokens=800)
    assert batches[0] == [1]  # longer than the budget: alone
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches[1:]:
        assert len(batch) <= 4 and len(batch) * max(lengths[i] for i in batch) <= 800


def unpadded(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)
                     ).logits[0, 0].item()


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
