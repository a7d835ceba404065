"""A tiny offline stand-in for InternLM2 checkpoints (`internlm/internlm2-7b-reward`, the InternLM2 SFT models).

`build_tiny_internlm2(out, kind)` writes a checkpoint laid out as the published ones are: `config.json` with
`auto_map` into the remote-code files beside it (copied from this folder), safetensors weights without the
non-persistent rotary buffers, and InternLM2's SentencePiece tokenizer (slow and fast remote classes, no
`tokenizer.json`) with `<|im_start|>`, `<|im_end|>`, the reward token and InternLM2's chat template. Loading it runs this folder's code as transformers runs any remote code.
"""

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

SOURCE_DIR = Path(__file__).parent
REMOTE_FILES = ("configuration_internlm2.py", "modeling_internlm2.py", "tokenization_internlm2.py",
                "tokenization_internlm2_fast.py")
REWARD_TOKEN = "[UNUSED_TOKEN_130]"  # InternLM2-7B-reward's reward token (id 92527 in the real vocabulary)
IM_TOKENS = ("<|im_start|>", "<|im_end|>")
# SentencePiece placeholder pieces; the published tokenizer_config.json renames two of them to the chat tokens
# (ids 92543 and 92542 in the real vocabulary). The reward token keeps its placeholder name.
PLACEHOLDERS = ("[UNUSED_TOKEN_130]", "[UNUSED_TOKEN_144]", "[UNUSED_TOKEN_145]")
RENAMED = {"[UNUSED_TOKEN_144]": "<|im_end|>", "[UNUSED_TOKEN_145]": "<|im_start|>"}
SP_VOCAB_SIZE = 600
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


def build_tokenizer(out: Path) -> None:
    """Write InternLM2's tokenizer files to `out`: a SentencePiece BPE `tokenizer.model` trained on the tiny corpus
    (byte fallback, placeholder pieces), the remote tokenizer code and a `tokenizer_config.json` that renames
    placeholders to the chat tokens, as the published checkpoints do. No `tokenizer.json`: the fast tokenizer
    is converted at load time."""
    import io

    import sentencepiece as spm

    from reward_transfer.tiny import CORPUS

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for line in CORPUS.splitlines() if line.strip()] * 4), model_writer=model,
        model_type="bpe", vocab_size=SP_VOCAB_SIZE, byte_fallback=True, character_coverage=1.0, num_threads=1,
        user_defined_symbols=list(PLACEHOLDERS), unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    added = {}
    for placeholder in PLACEHOLDERS:
        content = RENAMED.get(placeholder, placeholder)
        added[str(processor.piece_to_id(placeholder))] = {"content": content, "lstrip": False, "normalized": False,
                                                           "rstrip": False, "single_word": False, "special": True}
    tokenizer_config = {
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer",
                                       "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "tokenizer_class": "InternLM2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": list(IM_TOKENS),
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE, "model_max_length": 32768,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
         "additional_special_tokens": list(IM_TOKENS)}, indent=2) + "\n")


def _token_ids(out: Path) -> dict[str, int]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    ids = {RENAMED.get(p, p): processor.piece_to_id(p) for p in PLACEHOLDERS}
    return {**ids, "vocab_size": processor.get_piece_size(), "bos": processor.bos_id(), "eos": processor.eos_id()}


# A reward class in its own remote file, importing the backbone's (whose file alone defines the rotary classes).
WRAPPER_FILE, WRAPPER_CLASS = "modeling_internlm2_reward.py", "InternLM2RewardWrapper"


def build_tiny_internlm2(out: str | Path, kind: str = "reward", rope_scaling: dict | None = None,
                         seed: int = 0, reward_wrapper: bool = False) -> Path:
    """Write a tiny InternLM2 checkpoint of `kind` (reward | causal_lm) to `out`; same seed, same weights.
    `reward_wrapper`: the reward class is `InternLM2RewardWrapper` of a file of its own (same weights)."""
    from reward_transfer.tiny_internlm2 import configuration_internlm2, modeling_internlm2

    architecture, auto_classes = KINDS[kind]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    ids = _token_ids(out)
    settings = {**TINY_CONFIG, "vocab_size": ids["vocab_size"], "rope_scaling": rope_scaling,
                "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["eos"]}
    if kind == "reward":
        settings["reward_token_id"] = ids[REWARD_TOKEN]
    # transformers 5 rewrites a config's rope_scaling dict in place: build from copies, write the original.
    config = configuration_internlm2.InternLM2Config(**copy.deepcopy(
        {k: v for k, v in settings.items() if k != "torch_dtype"}))
    config.rope_scaling = copy.deepcopy(rope_scaling)  # as transformers 4 kept it (the loader under test copes)
    torch.manual_seed(seed)
    model = getattr(modeling_internlm2, architecture)(config)
    # save_pretrained would stumble over the list-typed _tied_weights_keys (a trait under test): write by hand.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    reference = f"modeling_internlm2.{architecture}"
    if reward_wrapper:
        architecture, reference = WRAPPER_CLASS, f"{Path(WRAPPER_FILE).stem}.{WRAPPER_CLASS}"
        shutil.copy(SOURCE_DIR / WRAPPER_FILE, out / WRAPPER_FILE)
    auto_map = {"AutoConfig": "configuration_internlm2.InternLM2Config", **dict.fromkeys(auto_classes, reference)}
    config_json = {"architectures": [architecture], "auto_map": auto_map, "model_type": "internlm2", **settings}
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    for name in REMOTE_FILES:
        shutil.copy(SOURCE_DIR / name, out / name)
    return out
