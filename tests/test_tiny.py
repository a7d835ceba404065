import hashlib
import subprocess
import sys

import torch
from conftest import REPO_ROOT
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def _digest(directory):
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_cli_builds_the_same_bytes_as_the_session_build(tiny_models, tmp_path):
    """Built offline, deterministic: the command line in a fresh process writes the bytes of the tests' own build."""
    subprocess.run([sys.executable, "-m", "reward_transfer.tiny", "--out", str(tmp_path / "cli")], cwd=REPO_ROOT,
                   check=True, capture_output=True)
    assert _digest(tmp_path / "cli") == _digest(tiny_models["lm"].parent)
    assert (tmp_path / "cli" / "lm" / "config.json").exists()


def test_reward_model_scores_chat_with_a_distinct_pad_token(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["rm"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["rm"])
    assert model.config.num_labels == 1
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "\\boxed{4}"}],
        tokenize=False,
    )
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    with torch.no_grad():
        assert model(torch.tensor([ids])).logits.shape == (1, 1)
