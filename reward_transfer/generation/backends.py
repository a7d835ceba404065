"""Where the candidate answers come from: vLLM, transformers `generate`, an OpenAI-compatible server, or a
replay file of completions made elsewhere. Every backend samples each problem with that problem's own seed,
so the candidates don't depend on batch size or on where a run was resumed."""

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from reward_transfer.errors import UserError
from reward_transfer.generation.problems import Problem, resolve_path
from reward_transfer.memory_plan import gpu_share

BACKENDS = ("vllm", "transformers", "openai", "replay")


class Backend(Protocol):
    def generate(self, problems: Sequence[Problem], n: int) -> list[list[str]]:
        """Up to `n` responses per problem, in the order of `problems`."""


def messages_for(problem: Problem, system_prompt: str | None) -> list[dict[str, str]]:
    """The chat sent to the model: an optional system message and the prompt as the user turn."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": problem.prompt}]


def _check_model_reachable(name_or_path: str) -> None:
    """Fail early, with the fix, when a Hub model is asked for while the Hub is switched off."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline and not Path(name_or_path).expanduser().exists():
        raise UserError(
            f"model.model_name_or_path: '{name_or_path}' is not a local directory and the Hub is offline "
            "(HF_HUB_OFFLINE=1); download the model once or point model.model_name_or_path at a local path"
        )


class ReplayBackend:
    """Responses read from a JSONL file of `{"problem": <raw problem text>, "responses": [str, ...]}` lines."""

    def __init__(self, path: str, delay_s: float = 0.0):
        self.path = path
        self.delay_s = delay_s
        self.responses = self._read(path)

    @staticmethod
    def _read(path: str) -> dict[str, list[str]]:
        resolved = Path(resolve_path(path))
        if not resolved.is_file():
            raise UserError(f"generation.replay_path: {path} does not exist")
        responses: dict[str, list[str]] = {}
        with resolved.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{line_number}: not valid JSON ({err.msg})") from err
                if (not isinstance(record, dict) or not isinstance(record.get("problem"), str)
                        or not isinstance(record.get("responses"), list)
                        or not all(isinstance(r, str) for r in record["responses"])):
                    raise UserError(f'{path}:{line_number}: expected {{"problem": str, "responses": [str, ...]}}')
                # Completions of one problem may come in several lines (e.g. from several runs): concatenate.
                responses.setdefault(record["problem"], []).extend(record["responses"])
        return responses

    def missing(self, problems: Sequence[Problem]) -> list[Problem]:
        """The problems the replay file has no line for."""
        return [p for p in problems if p.problem not in self.responses]

    def generate(self, problems: Sequence[Problem], n: int) -> list[list[str]]:
        out = []
        for problem in problems:
            if self.delay_s:
                time.sleep(self.delay_s)
            out.append(self.responses[problem.problem][:n])
        return out


class TransformersBackend:
    """Plain `model.generate` on CPU or a small GPU.

    Each problem is one `generate` call whose batch is its `n` samples, seeded with the problem's seed. Batching
    several problems together (with padding) would make each problem's samples depend on its batch neighbours,
    both through the shared random stream and through padded attention numerics.
    """

    def __init__(self, cfg):
        _check_model_reachable(cfg.model.model_name_or_path)
        import torch

        from reward_transfer.models import load_causal_lm, load_tokenizer

        self.torch = torch
        self.gen = cfg.generation
        name = cfg.model.model_name_or_path
        self.tokenizer = load_tokenizer(name, cfg.model.trust_remote_code, padding_side="left")
        self.model = load_causal_lm(name, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)
        self.system_prompt = cfg.prompt.system_prompt

    def generate(self, problems: Sequence[Problem], n: int) -> list[list[str]]:
        return [self._sample(problem, n) for problem in problems]

    def _sample(self, problem: Problem, n: int) -> list[str]:
        torch = self.torch
        text = self.tokenizer.apply_chat_template(
            messages_for(problem, self.system_prompt), add_generation_prompt=True, tokenize=False
        )
        # The chat template already holds the special tokens; adding them again would double the BOS.
        encoded = self.tokenizer([text] * n, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(self.model.device)
        # fork_rng keeps the caller's global random state untouched by the per-problem seed.
        with torch.random.fork_rng(devices=[self.model.device] if self.model.device.type == "cuda" else []):
            torch.manual_seed(problem.seed)
            with torch.no_grad():
                output = self.model.generate(
                    **encoded,
                    do_sample=True,
                    temperature=self.gen.temperature,
                    top_k=max(self.gen.top_k, 0),  # 0 switches top-k off in transformers
                    top_p=self.gen.top_p,
                    max_new_tokens=self.gen.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMBackend:
    """vLLM offline inference (the paper's engine): tensor parallel over the visible GPUs, seeded per problem."""

    def __init__(self, cfg):
        try:
            import vllm
        except ImportError as err:
            raise UserError(
                "generation.backend=vllm needs the vllm package (pip install -r requirements-gpu.txt on a GPU "
                "machine); on a CPU use generation.backend=transformers or openai"
            ) from err
        _check_model_reachable(cfg.model.model_name_or_path)
        self.vllm = vllm
        self.gen = cfg.generation
        self.system_prompt = cfg.prompt.system_prompt
        tensor_parallel = self.gen.tensor_parallel_size or _visible_gpu_count()
        self.llm = vllm.LLM(
            model=cfg.model.model_name_or_path,
            tensor_parallel_size=tensor_parallel,
            dtype=cfg.model.dtype,
            seed=cfg.seed,
            trust_remote_code=cfg.model.trust_remote_code,
            gpu_memory_utilization=self.gen.gpu_memory_utilization * gpu_share(),  # its share when steps share the GPU
            max_model_len=self.gen.max_model_len,
        )

    def generate(self, problems: Sequence[Problem], n: int) -> list[list[str]]:
        params = [
            self.vllm.SamplingParams(
                n=n,
                temperature=self.gen.temperature,
                top_k=self.gen.top_k if self.gen.top_k > 0 else -1,  # -1 switches top-k off in vLLM
                top_p=self.gen.top_p,
                max_tokens=self.gen.max_new_tokens,
                seed=problem.seed,
            )
            for problem in problems
        ]
        conversations = [messages_for(problem, self.system_prompt) for problem in problems]
        outputs = self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
        return [[completion.text for completion in output.outputs] for output in outputs]


def _visible_gpu_count() -> int:
    import torch

    return max(1, torch.cuda.device_count())


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server (`vllm serve`, SGLang, TGI...), requests in parallel threads."""

    def __init__(self, cfg):
        import openai

        self.openai = openai
        self.gen = cfg.generation
        self.model = self.gen.served_model_name or cfg.model.model_name_or_path
        self.system_prompt = cfg.prompt.system_prompt
        self.client = openai.OpenAI(
            base_url=self.gen.base_url,
            api_key=os.environ.get(self.gen.api_key_env) or "EMPTY",  # local servers accept any key
            timeout=self.gen.request_timeout_s,
            max_retries=self.gen.max_retries,
        )

    def generate(self, problems: Sequence[Problem], n: int) -> list[list[str]]:
        with ThreadPoolExecutor(max_workers=max(1, self.gen.concurrency)) as pool:
            return list(pool.map(lambda p: self._sample(p, n), problems))

    def _sample(self, problem: Problem, n: int) -> list[str]:
        responses: list[str] = []
        attempt = 0
        # Some servers return fewer than n choices per request; ask again (with a derived seed) for the rest.
        while len(responses) < n:
            try:
                completion = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages_for(problem, self.system_prompt),
                    n=n - len(responses),
                    temperature=self.gen.temperature,
                    top_p=self.gen.top_p,
                    max_tokens=self.gen.max_new_tokens,
                    seed=problem.seed + attempt,
                    # top_k is not an OpenAI parameter; vLLM and SGLang servers read it from the body.
                    extra_body={"top_k": self.gen.top_k} if self.gen.top_k > 0 else None,
                )
            except self.openai.APIConnectionError as err:
                raise UserError(
                    f"generation.base_url: cannot reach an OpenAI-compatible server at {self.gen.base_url} "
                    f"({err.__class__.__name__}); start one (e.g. `vllm serve MODEL`) or fix the URL"
                ) from err
            except self.openai.APIStatusError as err:
                raise UserError(
                    f"generation.base_url: the server at {self.gen.base_url} refused the request "
                    f"(HTTP {err.status_code}): {err.message}"
                ) from err
            choices = sorted(completion.choices, key=lambda c: c.index)
            if not choices:
                raise UserError(f"generation.base_url: the server at {self.gen.base_url} returned no choices")
            responses.extend(choice.message.content or "" for choice in choices)
            attempt += 1
        return responses[:n]


def make_backend(cfg) -> Backend:
    """The backend named by `generation.backend`, ready to generate (models loaded, files read)."""
    name = cfg.generation.backend
    if name == "replay":
        return ReplayBackend(cfg.generation.replay_path, cfg.generation.replay_delay_s)
    if name == "transformers":
        return TransformersBackend(cfg)
    if name == "vllm":
        return VLLMBackend(cfg)
    if name == "openai":
        return OpenAIBackend(cfg)
    raise UserError(f"generation.backend: unknown backend '{name}' (use one of {', '.join(BACKENDS)})")
