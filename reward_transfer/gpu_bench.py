"""`make gpu-bench`: measure this GPU's throughput table (benchmarks/throughput/<device>.json) in minutes, offline.

Throughput does not depend on the weights' values, so nothing is downloaded: full-size models are built from
configs with random weights. An InternLM2-7B-shaped reward model (LLaMA layers of its shape, LoRA r32 on every
linear layer, bf16) trains for a few dozen micro-batches per setting on pairs of log-normal lengths: padding-free
and padded (TRL's collator), with and without activation checkpointing, eager attention (InternLM2's published
code) and SDPA; it scores in length-sorted batches; it is saved and loaded back (and an adapter swapped in);
vLLM, where installed, generates with a Llama-3.1-8B-shaped model from dummy weights. Each figure is written as
measured (device, date, versions, setting, peak memory); figures not measured keep their estimate and say so.

    python -m reward_transfer.gpu_bench                 # on a CUDA machine (make gpu-bench)
    python -m reward_transfer.gpu_bench --tiny --out t.json   # the same code paths with tiny shapes, on CPU
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from reward_transfer.gpu_check import REPO_ROOT, bootstrap

THROUGHPUT_DIR = REPO_ROOT / "benchmarks" / "throughput"
# InternLM2-7B (config.json of internlm/internlm2-7b-reward) as LLaMA layers; Llama-3.1-8B for vLLM.
INTERNLM2_7B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 92544, "max_position_embeddings": 32768, "rope_theta": 1e6}
LLAMA_31_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
               "rope_theta": 500000.0}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 2048, "rope_theta": 1e4}


class Bench:
    """Where the measurements go, with what each was measured on."""

    def __init__(self, tiny: bool):
        import torch
        import transformers

        self.tiny, self.torch = tiny, torch
        self.cuda = torch.cuda.is_available() and not tiny
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        name = torch.cuda.get_device_name(0) if self.cuda else "CPU (--tiny shapes)"
        self.on = {"device": name, "date": date.today().isoformat(),
                   "versions": f"torch {torch.__version__}, transformers {transformers.__version__}"}
        self.measured: dict[str, dict[str, Any]] = {}
        self.skipped: list[str] = []

    def record(self, name: str, value: float, unit: str, setting: str, peak_gib: float | None = None) -> None:
        self.measured[name] = {"value": round(value, 3 if value < 10 else 1), "unit": unit, "source": "measured",
                               "measured_on": self.on, "setting": setting,
                               **({"peak_memory_gib": round(peak_gib, 1)} if peak_gib is not None else {})}
        print(f"  {name:<34}{value:>12.1f} {unit}  ({setting}" + (f"; peak {peak_gib:.1f} GiB" if peak_gib else "")
              + ")", flush=True)

    def peak_gib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


def reward_model(bench: Bench, shape: dict, attention: str):
    """A LLaMA reward model of `shape` with random weights, built in place on the device in the bench's dtype."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**shape, num_labels=1, pad_token_id=0, attn_implementation=attention)
    torch = bench.torch
    default = torch.get_default_dtype()
    torch.set_default_dtype(bench.dtype)
    try:
        with torch.device(bench.device):
            return LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(default)


def lognormal_pairs(count: int, vocab: int, max_length: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """Token ids of pairs whose answers have log-normal lengths (as model-written answers do), a shared prompt."""
    rng = random.Random(seed)

    def side(prompt: list[int]) -> list[int]:
        answer = [rng.randrange(1, vocab) for _ in range(min(int(rng.lognormvariate(5.6, 0.7)), 4 * max_length))]
        return (prompt + answer)[:max_length]

    pairs = []
    for _ in range(count):
        prompt = [rng.randrange(1, vocab) for _ in range(rng.randint(40, 300))]
        pairs.append({"chosen_ids": side(prompt), "rejected_ids": side(prompt)})
    return pairs


def train_rate(bench: Bench, model, pairs: list[dict], micro_batch: int, padding_free: bool, checkpointing: bool
               ) -> tuple[float, float | None]:
    """Real tokens per second of LoRA training over `pairs` (the first micro-batches warm up), and peak memory."""
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from reward_transfer.padding_free import PaddingFreeCollator, sequence_rewards

    torch = bench.torch
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    collate = PaddingFreeCollator() if padding_free else DataCollatorForPreference(pad_token_id=0)
    batches = [collate(pairs[i:i + micro_batch]) for i in range(0, len(pairs) - micro_batch + 1, micro_batch)]
    warmup, tokens, started = 2, 0, 0.0
    bench.reset_peak()
    for index, batch in enumerate(batches):
        if index == warmup:
            bench.sync()
            started = time.perf_counter()
        batch = {key: value.to(bench.device) for key, value in batch.items()}
        if padding_free:
            rewards = sequence_rewards(model, batch, packed=False)
        else:
            rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        chosen, rejected = rewards.float().chunk(2)
        (-torch.nn.functional.logsigmoid(chosen - rejected).mean()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= warmup:
            tokens += sum(len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs[index * micro_batch:
                                                                                         (index + 1) * micro_batch])
    bench.sync()
    return tokens / (time.perf_counter() - started), bench.peak_gib()


def measure_training(bench: Bench, shape: dict, pairs: list[dict]) -> None:
    """rm_train_tokens_per_s (eager attention, as the paper's remote code; padding-free; no checkpointing), the
    checkpointing slowdown, padding's cost, and SDPA's rate."""
    from peft import LoraConfig, get_peft_model

    rates = {}
    for attention in ("eager", "sdpa"):
        model = get_peft_model(reward_model(bench, shape, attention),
                               LoraConfig(r=32, lora_alpha=64, lora_dropout=0.01, target_modules="all-linear",
                                          exclude_modules=["score"], modules_to_save=["score"]))
        settings = [(True, False), (True, True), (False, False)] if attention == "eager" else [(True, False)]
        for padding_free, checkpointing in settings:
            rates[attention, padding_free, checkpointing] = train_rate(bench, model, pairs, 2, padding_free,
                                                                       checkpointing)
        del model
        bench.reset_peak()
    rate, peak = rates["eager", True, False]
    bench.record("rm_train_tokens_per_s", rate, "tokens/s", "LoRA r32, micro-batch 2 pairs, padding-free, no "
                 "checkpointing, eager attention", peak)
    bench.record("checkpointing_slowdown", rate / rates["eager", True, True][0], "x time",
                 "the same with activation checkpointing", rates["eager", True, True][1])
    bench.record("padding_free_speedup", rate / rates["eager", False, False][0], "x real tokens/s",
                 "padding-free vs TRL's padded micro-batches of 2 pairs", rates["eager", False, False][1])
    bench.record("rm_train_tokens_per_s_sdpa", rates["sdpa", True, False][0], "tokens/s",
                 "as rm_train_tokens_per_s with SDPA attention", rates["sdpa", True, False][1])


def measure_scoring(bench: Bench, shape: dict, pairs: list[dict], batch_tokens: int) -> None:
    """score_tokens_per_s: forward passes over length-sorted, token-budgeted batches (as the scoring engine does)."""
    from reward_transfer.scoring import token_budget_batches

    torch = bench.torch
    model = reward_model(bench, shape, "eager").eval()
    sequences = sorted((p[side] for p in pairs for side in ("chosen_ids", "rejected_ids")), key=len)
    batches = token_budget_batches([len(s) for s in sequences], 64, batch_tokens)
    bench.reset_peak()
    tokens, started = 0, None
    with torch.no_grad():
        for index, batch in enumerate(batches):
            if index == 1:
                bench.sync()
                started = time.perf_counter()
            rows = [sequences[i] for i in batch]
            width = max(map(len, rows))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=bench.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=bench.device)
            model(input_ids=ids, attention_mask=mask, use_cache=False)
            tokens += sum(map(len, rows)) if index >= 1 else 0
    bench.sync()
    bench.record("score_tokens_per_s", tokens / (time.perf_counter() - started), "tokens/s",
                 f"eager attention, batches of up to {batch_tokens} tokens", bench.peak_gib())


def measure_loading(bench: Bench, shape: dict, work: Path, merge: bool) -> None:
    """model_load_s (a saved reward model back onto the device through the project's loader), adapter_swap_s, and,
    when there is time, merge_s (merge_peft_model's work on CPU)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from reward_transfer.merging import merge_adapter
    from reward_transfer.models import load_reward_model
    from reward_transfer.tiny import build_tokenizer

    model = reward_model(bench, shape, "eager")
    model.save_pretrained(work / "base")
    build_tokenizer().save_pretrained(work / "base")  # the loader wants one; its vocabulary does not matter here
    adapter = get_peft_model(model, LoraConfig(r=32, target_modules="all-linear", exclude_modules=["score"],
                                               modules_to_save=["score"]))
    adapter.save_pretrained(work / "adapter")
    del model, adapter
    bench.reset_peak()
    started = time.perf_counter()
    loaded, _ = load_reward_model(str(work / "base"), device=str(bench.device), dtype=bench.dtype)
    bench.sync()
    bench.record("model_load_s", time.perf_counter() - started, "s", "safetensors from local disk to the device "
                 "(page cache as the disk left it)")
    started = time.perf_counter()
    swapped = PeftModel.from_pretrained(loaded, str(work / "adapter"), adapter_name="first")
    swapped.load_adapter(str(work / "adapter"), adapter_name="second")
    swapped.set_adapter("second")
    bench.sync()
    bench.record("adapter_swap_s", (time.perf_counter() - started) / 2, "s", "PEFT load_adapter + set_adapter")
    del loaded, swapped
    bench.reset_peak()
    if merge:
        started = time.perf_counter()
        merge_adapter(str(work / "base"), str(work / "adapter"), work / "merged")
        bench.record("merge_s", time.perf_counter() - started, "s", "merge_peft_model.py on CPU: load, fold, write")
        shutil.rmtree(work / "merged", ignore_errors=True)
    else:
        bench.skipped.append("merge_s (not enough of the time budget left)")


def measure_vllm(bench: Bench, shape: dict, work: Path, prompts: int, samples: int, max_tokens: int) -> None:
    """generate_output_tokens_per_s: vLLM sampling `samples` answers per prompt from dummy Llama-3.1-8B weights."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        bench.skipped.append("generate_output_tokens_per_s (vLLM is not installed)")
        return
    from transformers import LlamaConfig

    LlamaConfig(**shape, torch_dtype="bfloat16").save_pretrained(work / "generator")
    llm = LLM(model=str(work / "generator"), load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
              max_model_len=2048, gpu_memory_utilization=0.85, seed=0)
    rng = random.Random(0)
    requests = [{"prompt_token_ids": [rng.randrange(1, 32000) for _ in range(200)]} for _ in range(prompts)]
    params = SamplingParams(n=samples, temperature=0.9, max_tokens=max_tokens, ignore_eos=True, detokenize=False)
    llm.generate(requests[:4], params, use_tqdm=False)  # warm-up: CUDA graphs, allocator
    started = time.perf_counter()
    outputs = llm.generate(requests, params, use_tqdm=False)
    produced = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    bench.record("generate_output_tokens_per_s", produced / (time.perf_counter() - started), "tokens/s",
                 f"{prompts} prompts x {samples} samples x {max_tokens} tokens, 200-token prompts, dummy weights")
    del llm


def write_table(bench: Bench, out: Path, template: Path) -> dict:
    """The device's table: the estimates of `template` with every measured figure replaced."""
    table = json.loads(template.read_text())
    table["device"] = bench.on["device"]
    for name, entry in bench.measured.items():
        section = next((s for s in ("figures", "tokens") if name in table[s]), "figures")
        table[section][name] = entry
    table["not_measured"] = bench.skipped
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=2) + "\n")
    return table


def device_slug(name: str) -> str:
    """benchmarks/throughput/<slug>.json for a CUDA device name ('NVIDIA H200' → 'h200')."""
    words = [w for w in name.lower().replace("-", " ").split() if w not in ("nvidia", "tesla", "geforce")]
    return "_".join(words[:2]) or "gpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (the code paths, no figures)")
    parser.add_argument("--out", help="the table to write (default: benchmarks/throughput/<device>.json)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="leave out optional parts past this time")
    args = parser.parse_args(argv)
    bootstrap("reward_transfer.gpu_bench")
    started = time.perf_counter()
    bench = Bench(args.tiny)
    if not bench.cuda and not args.tiny:
        print("gpu-bench: no CUDA device visible; --tiny runs the code paths on the CPU", file=sys.stderr)
        return 1
    shape = TINY if args.tiny else INTERNLM2_7B
    pairs = lognormal_pairs(12 if args.tiny else 64, shape["vocab_size"], 1024)
    print(f"gpu-bench on {bench.on['device']} ({bench.on['versions']})", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        measure_training(bench, shape, pairs)
        measure_scoring(bench, shape, lognormal_pairs(16 if args.tiny else 512, shape["vocab_size"], 4096), 16384)
        left = args.budget_s - (time.perf_counter() - started)
        measure_loading(bench, shape, Path(tmp), merge=args.tiny or left > 330)
        left = args.budget_s - (time.perf_counter() - started)
        if not bench.cuda or left < 120:
            bench.skipped.append("generate_output_tokens_per_s (" + ("vLLM needs a GPU" if not bench.cuda else
                                                                     "not enough of the time budget left") + ")")
        else:
            try:
                measure_vllm(bench, LLAMA_31_8B, Path(tmp), prompts=64, samples=8, max_tokens=512)
            except Exception as err:  # vLLM's own failure is reported; the figures measured so far are still written
                bench.skipped.append(f"generate_output_tokens_per_s (vLLM failed: {err.__class__.__name__}: {err})")
    out = Path(args.out) if args.out else THROUGHPUT_DIR / f"{device_slug(bench.on['device'])}.json"
    template = out if out.is_file() else THROUGHPUT_DIR / "h200.json"
    write_table(bench, out, template)
    print(f"gpu-bench: {len(bench.measured)} figures measured in {time.perf_counter() - started:.0f} s -> {out}"
          + "".join(f"\n  not measured: {why}" for why in bench.skipped), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
