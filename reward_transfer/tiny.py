"""Tiny offline models, the embedded stand-ins for Llama-3.1-8B-Instruct and InternLM2-7B-reward.

`python -m reward_transfer.tiny --out DIR` builds, deterministically and without any download:
  DIR/lm  a tiny Llama causal LM with a byte-level BPE tokenizer and a chat template;
  DIR/rm  a tiny Llama sequence-classification reward model (one output), same tokenizer.
The models are random but real: every code path (generate, LoRA training, scoring, merging) runs on them.
"""

import argparse
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

DEFAULT_DIR = Path(os.environ.get("REWARD_TRANSFER_TINY_DIR", ".tiny_models"))
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|pad|>", "<|begin_of_text|>", "<|eot|>", "<|user|>", "<|assistant|>", "<|system|>"]
# Each message ends with <|eot|> (the EOS), so the scored last token of a conversation is a real token,
# distinct from the pad token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|eot|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Text the BPE merges are learnt from: enough math and Python to give short token sequences.
CORPUS = r"""
Let's solve the problem step by step. The final answer is \boxed{42}. We have x = 5, so 2x + 3 = 13.
Therefore the answer is \boxed{\frac{1}{2}}. Since \sqrt{16} = 4 and \pi r^2 is the area of a circle,
the probability is \frac{3}{4}. The sum of the roots is -\frac{b}{a}. Hence \boxed{(1, 2)} and \boxed{[0, 1)}.
Compute 17 \times 23 = 391. The number of ways is \binom{10}{3} = 120. The angle is 45^\circ, i.e. 25\%.
def solve():
    n = int(input())
    values = list(map(int, input().split()))
    print(sum(values))
for i in range(n):
    if values[i] % 2 == 0:
        count += 1
class Solution:
    def twoSum(self, nums, target):
        return [i for i in range(len(nums))]
import sys
data = sys.stdin.read().split()
print(" ".join(str(x) for x in result))
"""


def build_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on CORPUS (deterministic), with specials and a chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot|>",
        pad_token="<|pad|>",
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def tiny_llama_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> LlamaConfig:
    """A Llama config small enough to train on a laptop CPU in seconds."""
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def build_tiny_models(out: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write `out/lm` and `out/rm` (fp32 safetensors); same seed, same bytes. Returns their paths."""
    out = Path(out)
    tokenizer = build_tokenizer()
    paths = {"lm": out / "lm", "rm": out / "rm"}

    torch.manual_seed(seed)
    lm = LlamaForCausalLM(tiny_llama_config(tokenizer))
    lm.generation_config.pad_token_id = tokenizer.pad_token_id
    lm.generation_config.eos_token_id = tokenizer.eos_token_id

    torch.manual_seed(seed + 1)
    rm = LlamaForSequenceClassification(tiny_llama_config(tokenizer, num_labels=1))

    for name, model in (("lm", lm), ("rm", rm)):
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    (out / "COMPLETE").write_text("tiny models built by reward_transfer.tiny\n")
    return paths


def ensure_tiny_models(out: str | os.PathLike = DEFAULT_DIR) -> dict[str, Path]:
    """Build the tiny models on first use; later calls reuse them."""
    out = Path(out)
    if (out / "COMPLETE").exists():
        return {"lm": out / "lm", "rm": out / "rm"}
    return build_tiny_models(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_DIR), help="directory to write lm/ and rm/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = build_tiny_models(args.out, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
