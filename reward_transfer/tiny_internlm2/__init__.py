"""A tiny offline stand-in for InternLM2 checkpoints (`internlm/internlm2-7b-reward`, the InternLM2 SFT models).

`build_tiny_internlm2(out, kind)` writes a checkpoint laid out as the published ones are: `config.json` with
`auto_map` into the remote-code files beside it (copied from this folder), safetensors weights without the
non-persistent rotary buffers, and a tokenizer with `<|im_start|>`, `<|im_end|>`, the reward token and
InternLM2's chat template. Loading it runs this folder's code as transformers runs any remote code.
"""

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

SOURCE_DIR = Path(__file__).parent
REMOTE_FILES = ("configuration_internlm2.py", "modeling_internlm2.py")
REWARD_TOKEN = "[UNUSED_TOKEN_130]"  # InternLM2-7B-reward's reward token (id 92527 in the real vocabulary)
IM_TOKENS = ("<|im_start|>", "<|im_end|>")
# InternLM2's chat template (no system prompt by default; every turn closed by <|im_end|> and a newline).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
KINDS = {
    "reward": ("InternLM2ForRewardModel", ("AutoModel",)),
    "causal_lm": ("InternLM2ForCausalLM", ("AutoModel", "AutoModelForCausalLM")),
}
# The published config.json's field names and (scaled-down) values.
TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, hidden_act="silu", max_position_embeddings=512, initializer_range=0.02,
                   rms_norm_eps=1e-5, use_cache=True, pretraining_tp=1, tie_word_embeddings=False, bias=False,
                   rope_theta=1000000, attn_implementation="eager", torch_dtype="float32")


def build_tokenizer():
    """The tiny byte-level tokenizer with InternLM2's special tokens and chat template."""
    from reward_transfer.tiny import build_tokenizer as build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [*IM_TOKENS, REWARD_TOKEN]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_internlm2(out: str | Path, kind: str = "reward", rope_scaling: dict | None = None,
                         seed: int = 0) -> Path:
    """Write a tiny InternLM2 checkpoint of `kind` (reward | causal_lm) to `out`; same seed, same weights."""
    from reward_transfer.tiny_internlm2 import configuration_internlm2, modeling_internlm2

    architecture, auto_classes = KINDS[kind]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    settings = {**TINY_CONFIG, "vocab_size": len(tokenizer), "rope_scaling": rope_scaling,
                "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id}
    if kind == "reward":
        settings["reward_token_id"] = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
    # transformers 5 rewrites a config's rope_scaling dict in place: build from copies, write the original.
    config = configuration_internlm2.InternLM2Config(**copy.deepcopy(
        {k: v for k, v in settings.items() if k != "torch_dtype"}))
    config.rope_scaling = copy.deepcopy(rope_scaling)  # as transformers 4 kept it (the loader under test copes)
    torch.manual_seed(seed)
    model = getattr(modeling_internlm2, architecture)(config)
    # save_pretrained would stumble over the list-typed _tied_weights_keys (a trait under test): write by hand.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    auto_map = {"AutoConfig": "configuration_internlm2.InternLM2Config",
                **{auto: f"modeling_internlm2.{architecture}" for auto in auto_classes}}
    config_json = {"architectures": [architecture], "auto_map": auto_map, "model_type": "internlm2", **settings}
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    for name in REMOTE_FILES:
        shutil.copy(SOURCE_DIR / name, out / name)
    tokenizer.save_pretrained(out)
    return out
