"""Tokenise once: a conversation tokenised by one step of a run is read back, identical, by every later step with
the same encoding (tokenizer, template, reward token, length rule), and never by a step with another."""

import copy
import os

import pytest
from datasets import Dataset
from training_helpers import synthetic_pairs

from reward_transfer import training_data
from reward_transfer.models import load_reward_model, reward_token_id
from reward_transfer.scoring import score_conversations
from reward_transfer.tiny_internlm2 import build_tiny_internlm2
from reward_transfer.token_cache import TokenCache
from reward_transfer.training_data import encode_pairs


@pytest.fixture(scope="module", params=["llama", "internlm2"])
def model_and_tokenizer(request, tiny_models, tmp_path_factory):
    path = tiny_models["rm"] if request.param == "llama" else build_tiny_internlm2(tmp_path_factory.mktemp("rm"))
    return load_reward_model(str(path), device="cpu", dtype="float32")


def rows(count: int, seed: int = 0) -> Dataset:
    data = synthetic_pairs(count, seed)
    data[0]["accepted"] += " and more" * 80  # one pair long enough to be truncated
    return Dataset.from_list(data)


def test_training_reads_back_the_ids_it_wrote_and_subsets_share_them(model_and_tokenizer, tmp_path, monkeypatch):
    model, tokenizer = model_and_tokenizer
    token = reward_token_id(model)
    fresh, fresh_stats = encode_pairs(rows(40), tokenizer, 96, "truncate", token)  # no cache
    encode_pairs(rows(40).select(range(20)), tokenizer, 96, "truncate", token, tmp_path)  # the 20k run
    calls = []
    real = training_data.encode_conversation
    monkeypatch.setattr(training_data, "encode_conversation", lambda *a, **k: calls.append(1) or real(*a, **k))
    cached, stats = encode_pairs(rows(40), tokenizer, 96, "truncate", token, tmp_path)  # the 40k run
    assert stats.sides_from_cache == 40 and len(calls) == 40  # the first 20 pairs' sides came from the cache
    assert cached["chosen_ids"] == fresh["chosen_ids"] and cached["rejected_ids"] == fresh["rejected_ids"]
    assert stats.truncated == fresh_stats.truncated == 1
    calls.clear()
    _, again = encode_pairs(rows(40), tokenizer, 96, "truncate", token, tmp_path)
    assert again.sides_from_cache == 80 and not calls


def test_another_length_rule_or_tokenizer_never_reads_the_cache(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    token = reward_token_id(model)
    encode_pairs(rows(10), tokenizer, 96, "truncate", token, tmp_path)
    _, other_length = encode_pairs(rows(10), tokenizer, 64, "truncate", token, tmp_path)
    _, other_policy = encode_pairs(rows(10), tokenizer, 96, "drop", token, tmp_path)
    assert other_length.sides_from_cache == other_policy.sides_from_cache == 0
    changed = copy.deepcopy(tokenizer)
    changed.add_tokens(["<|a_new_token|>"])
    _, other_tokenizer = encode_pairs(rows(10), changed, 96, "truncate", token, tmp_path)
    assert other_tokenizer.sides_from_cache == 0


def test_scoring_reads_the_cache_and_gives_the_same_scores(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    data = synthetic_pairs(12, seed=5)
    problems, answers = [r["problem"] for r in data] * 2, [r["accepted"] for r in data] + [r["rejected"] for r in data]
    first = score_conversations(model, tokenizer, problems, answers, progress=False, token_cache=tmp_path)
    second = score_conversations(model, tokenizer, problems, answers, progress=False, token_cache=tmp_path)
    assert first.tokenized_before == 0 and second.tokenized_before == second.distinct == 24
    assert (first.scores == second.scores).all() and (first.input_hashes == second.input_hashes).all()
    # A smaller budget cuts prompts: another encoding, tokenised afresh.
    third = score_conversations(model, tokenizer, problems, answers, max_length=40, progress=False, token_cache=tmp_path)
    assert third.tokenized_before == 0


def test_writers_add_whole_shards_and_a_shard_cut_short_is_ignored(model_and_tokenizer, tmp_path):
    _, tokenizer = model_and_tokenizer
    one, two = (TokenCache(tmp_path, tokenizer, None, "score:100") for _ in range(2))
    one.get("p", "a", lambda: ([1, 2], 0))
    two.get("p", "b", lambda: ([3], 1))
    one.save()
    two.save()
    import socket

    dead = one.folder / f".cut-short.arrow~{socket.gethostname()}~999999999.partial"  # a writer killed mid-write
    dead.write_bytes(b"not arrow")
    alive = one.folder / f".being-written.arrow~{socket.gethostname()}~{os.getpid()}.partial"
    alive.write_bytes(b"not arrow yet")
    elsewhere = one.folder / ".on-another-node.arrow~node-17.cluster~1.partial"  # a shared cache: may be alive
    elsewhere.write_bytes(b"not arrow yet")
    reader = TokenCache(tmp_path, tokenizer, None, "score:100")
    assert not dead.exists() and alive.exists() and elsewhere.exists()  # a live writer's file is left alone
    assert reader.get("p", "a", lambda: pytest.fail("tokenised again")) == ([1, 2], 0)
    assert reader.get("p", "b", lambda: pytest.fail("tokenised again")) == ([3], 1)
