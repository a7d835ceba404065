"""Merging: the merged directory is a standalone reward model scoring exactly like base + adapter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from training_helpers import (
    OFFLINE_ENV,
    REPO_ROOT,
    compose_config,
    score,
    synthetic_pairs,
    tiny_run,
    write_pairs,
)
from transformers import AutoConfig

from reward_transfer.conversations import conversation
from reward_transfer.errors import UserError
from reward_transfer.merging import merge_adapter
from reward_transfer.models import load_reward_model
from reward_transfer.tiny_internlm2 import build_tiny_internlm2
from reward_transfer.training import train_reward_model

ROWS = [*synthetic_pairs(6, seed=3),
        {"problem": "Sort [3, 1, 2].", "accepted": "def solve():\n    print(1)", "rejected": "x"}]
pytestmark = pytest.mark.usefixtures("single_cpu_thread")


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pref-data-code", train=16)


def _train(config: str, model: Path, data: Path, out: Path, *extra: str) -> Path:
    train_reward_model(compose_config(config, ["profile=tiny", *extra, *tiny_run(model, data, out, "train.max_steps=3")]))
    return out


def _scores(path: Path) -> torch.Tensor:
    model, tokenizer = load_reward_model(str(path), device="cpu", dtype="float32")
    problems = [r["problem"] for r in ROWS]
    return torch.cat([score(model, tokenizer, problems, [r[k] for r in ROWS]) for k in ("accepted", "rejected")])


def _assert_merge_is_exact(adapter: Path, merged: Path) -> None:
    before, after = _scores(adapter), _scores(merged)
    assert not (merged / "adapter_config.json").exists()
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()


def test_merged_seq_cls_reward_model_scores_like_base_plus_adapter(tiny_models, pairs_dir, tmp_path):
    adapter = _train("demo_code", tiny_models["rm"], pairs_dir, tmp_path / "code_20k")
    merged = merge_adapter(None, str(adapter))
    assert merged == tmp_path / "code_20k-merged"
    _assert_merge_is_exact(adapter, merged)


def test_merged_new_head_model_keeps_its_trained_head(tiny_models, pairs_dir, tmp_path):
    adapter = _train("code_scratch", tiny_models["lm"], pairs_dir, tmp_path / "code_scratch")
    merged = merge_adapter(str(tiny_models["lm"]), str(adapter), tmp_path / "scratch-merged")
    config = AutoConfig.from_pretrained(merged)
    assert config.architectures == ["LlamaForSequenceClassification"] and config.num_labels == 1
    _assert_merge_is_exact(adapter, merged)


def test_internlm2_remote_code_model_trains_merges_and_evaluates(pairs_dir, tmp_path):
    base = build_tiny_internlm2(tmp_path / "tiny-internlm2-reward", rope_scaling={"type": "dynamic", "factor": 2.0})
    adapter = _train("finetune", base, pairs_dir, tmp_path / "il_code", "domain=code", "name=il_code")
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        assert any(".v_head." in key for key in handle.keys())  # noqa: SIM118  (PEFT would not save it by itself)

    merged = tmp_path / "il_code-merged"
    result = subprocess.run(
        [sys.executable, "merge_peft_model.py", "--base_model", str(base), "--model_name", str(adapter),
         "--output_dir", str(merged)], cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((merged / "config.json").read_text())
    assert config["auto_map"]["AutoModel"].endswith("InternLM2ForRewardModel")
    assert config["rope_scaling"] == {"type": "dynamic", "factor": 2.0} and "rope_parameters" not in config
    assert all((merged / name).exists() for name in ("modeling_internlm2.py", "configuration_internlm2.py",
                                                      "tokenization_internlm2.py", "tokenizer.model"))
    _assert_merge_is_exact(adapter, merged)
    model, tokenizer = load_reward_model(str(merged))
    own = model.get_score(tokenizer, conversation(ROWS[0]["problem"], ROWS[0]["accepted"]))  # appends the reward token
    assert abs(own - score(model, tokenizer, [ROWS[0]["problem"]], [ROWS[0]["accepted"]]).item()) < 1e-5

    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "eval.py", "--config-name=base", "domain=code", "name=il_code",
         f"model.model_name_or_path={merged}",
         f"dataset.datasets=[{{name_or_path:{pairs_dir},split:train}}]", f"output_dir={out}", "model.max_length=128"],
        cwd=REPO_ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_pairs"] == 16 and 0 <= results["accuracy"] <= 1


def test_a_rerun_keeps_the_same_merge_refuses_another_and_pushes_privately(tiny_models, pairs_dir, tmp_path,
                                                                          monkeypatch, capsys):
    import huggingface_hub

    adapter = _train("demo_code", tiny_models["rm"], pairs_dir, tmp_path / "code_5k")
    merged = merge_adapter(None, str(adapter), tmp_path / "merged")
    before = (merged / "model.safetensors").stat().st_mtime_ns
    pushed = []

    class RecordingApi:  # the Hub is the true external boundary: record what would be uploaded
        def create_repo(self, repo_id, private, exist_ok):
            pushed.append((repo_id, private))

        def upload_folder(self, repo_id, folder_path, commit_message):
            pushed.append(folder_path)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    capsys.readouterr()
    assert merge_adapter(None, str(adapter), merged, push_to_hub=True, repo_id="me/code-rm") == merged
    assert "already complete" in capsys.readouterr().out
    assert (merged / "model.safetensors").stat().st_mtime_ns == before
    assert pushed == [("me/code-rm", True), str(merged)]  # private unless told otherwise
    with pytest.raises(UserError, match=r"other settings \(base_model: .* → .*lm'\)"):
        merge_adapter(str(tiny_models["lm"]), str(adapter), merged)


def test_merge_names_the_real_cause_of_a_missing_adapter(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        merge_adapter(None, str(tmp_path / "no-such-adapter"))
    with pytest.raises(UserError, match="Hub is offline"):  # conftest forces the Hub offline
        merge_adapter(None, "someone/some-adapter")


def test_merge_refuses_an_adapter_whose_base_is_gone(tmp_path):
    adapter = tmp_path / "orphan"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone"),
                                                             "peft_type": "LORA"}))
    with pytest.raises(UserError, match="cannot load its base model"):
        merge_adapter(None, str(adapter))
    with pytest.raises(UserError, match="not a LoRA adapter"):
        merge_adapter(None, str(tmp_path))
    assert not (tmp_path / "orphan-merged").exists()
