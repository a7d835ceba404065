"""Build the tiny InternLM2-style remote-code reward model offline, from the files in tests/fixtures/tiny_internlm2."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from reward_transfer.tiny import build_tokenizer, tiny_llama_config

SOURCE_DIR = Path(__file__).parent / "fixtures" / "tiny_internlm2"
REWARD_TOKEN = "<|reward|>"


def build_tiny_internlm2(out: Path, seed: int = 0) -> Path:
    """Write a remote-code RM to `out` (config with auto_map → AutoModel only, num_labels=2) and return `out`."""
    from fixtures.tiny_internlm2.configuration_tiny_internlm2 import TinyInternLM2Config
    from fixtures.tiny_internlm2.modeling_tiny_internlm2 import TinyInternLM2ForRewardModel

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    settings = tiny_llama_config(tokenizer).to_dict()
    for key in ("model_type", "transformers_version", "architectures", "num_labels", "id2label", "label2id"):
        settings.pop(key, None)
    config = TinyInternLM2Config(**settings, reward_token_id=tokenizer.convert_tokens_to_ids(REWARD_TOKEN))
    torch.manual_seed(seed)
    model = TinyInternLM2ForRewardModel(config)
    # save_pretrained would fail on the list-typed _tied_weights_keys (the trait under test): write the files by hand.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    config_dict = config.to_dict()
    config_dict["architectures"] = ["TinyInternLM2ForRewardModel"]
    config_dict["auto_map"] = {
        "AutoConfig": "configuration_tiny_internlm2.TinyInternLM2Config",
        "AutoModel": "modeling_tiny_internlm2.TinyInternLM2ForRewardModel",
    }
    (out / "config.json").write_text(json.dumps(config_dict, indent=2))
    for source in ("configuration_tiny_internlm2.py", "modeling_tiny_internlm2.py"):
        shutil.copy(SOURCE_DIR / source, out / source)
    tokenizer.save_pretrained(out)
    return out
