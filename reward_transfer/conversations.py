"""The one scoring protocol: how a (problem, answer) pair becomes the token ids a reward model scores.

Training, evaluation and active-learning selection all go through `encode_conversation`, so a model is
scored the same way everywhere: the chat template decides the special tokens (nothing is added twice), an
InternLM2-style model gets its reward token appended, and a conversation longer than `max_length` loses the
end of its answer (the prompt and the template's closing tokens are kept).
"""

import json
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

# A problem is a string (the user turn) or, for conversational preference data, the prompt's messages.
Problem = str | list[dict[str, str]]


def conversation(problem: Problem, answer: str) -> list[dict[str, str]]:
    """The chat messages of one scored pair side: the problem as the user turn(s), the answer as the assistant's."""
    prompt = [{"role": "user", "content": problem}] if isinstance(problem, str) else list(problem)
    return [*prompt, {"role": "assistant", "content": answer}]


def problem_key(problem: Problem) -> str:
    """A hashable form of a problem (to score each distinct conversation once)."""
    return problem if isinstance(problem, str) else json.dumps(problem, sort_keys=True)


def format_conversation(tokenizer: PreTrainedTokenizerBase, problem: Problem, answer: str) -> str:
    """The conversation rendered by the tokenizer's chat template (special tokens included, as the template puts them)."""
    if not getattr(tokenizer, "chat_template", None):
        turns = [m["content"] for m in conversation(problem, answer)]
        return "\n\n".join(turns) + (tokenizer.eos_token or "")
    return tokenizer.apply_chat_template(conversation(problem, answer), tokenize=False)


def _token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    # The rendered template already holds BOS/EOS where the model expects them.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Encoded:
    """Token ids of one scored conversation; `truncated` says its answer was cut, `fits` False: even the prompt is too long."""

    input_ids: list[int]
    truncated: bool = False
    fits: bool = True


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    problem: Problem,
    answer: str,
    max_length: int | None = None,
    reward_token_id: int | None = None,
) -> Encoded:
    """Token ids scored for (problem, answer): template text, reward token appended when the model has one.

    Longer than `max_length`: the answer is cut (token-wise, then re-rendered so the closing tokens stay) until it
    fits; if the prompt alone does not fit, `fits` is False and the caller drops the pair.
    """
    suffix = [] if reward_token_id is None else [reward_token_id]
    ids = _token_ids(tokenizer, format_conversation(tokenizer, problem, answer)) + suffix
    if max_length is None or len(ids) <= max_length:
        return Encoded(ids)
    answer_ids = _token_ids(tokenizer, answer)
    keep = len(answer_ids) - (len(ids) - max_length)
    while keep >= 0:
        cut = tokenizer.decode(answer_ids[:keep], skip_special_tokens=False)
        ids = _token_ids(tokenizer, format_conversation(tokenizer, problem, cut)) + suffix
        if len(ids) <= max_length:
            return Encoded(ids, truncated=True)
        keep -= max(1, len(ids) - max_length)
    return Encoded(ids, truncated=True, fits=False)
