"""The one scoring protocol: how a (problem, answer) pair becomes the token ids a reward model scores.

Training, evaluation and active-learning selection render conversations the same way: the chat template decides
the special tokens (nothing is added twice) and an InternLM2-style model gets its reward token appended. They
differ only in what a length budget cuts:
- training (`encode_conversation`, the paper's `max_length` 1024): the end of the answer (the prompt and the
  template's closing tokens are kept), as TRL's truncation does;
- scoring for evaluation, selection and best-of-n (`encode_for_scoring`, budget: the model's context): the start
  of the prompt, never an answer or the reward token, so the two sides of a pair are never the same input. Only
  when an answer alone exceeds the budget is the start of that answer cut too (its end and the reward token stay).
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


# How `encode_for_scoring` had to shorten a conversation (counted per stage in results.json and summaries).
CUT_NONE, CUT_PROMPT, CUT_ANSWER = 0, 1, 2
CUT_NAMES = {CUT_PROMPT: "prompt_start", CUT_ANSWER: "answer_start"}


@dataclass
class ScoringEncoded:
    """Token ids of one scored conversation and how the budget cut it (CUT_NONE | CUT_PROMPT | CUT_ANSWER)."""

    input_ids: list[int]
    cut: int = CUT_NONE


def _keep_last(tokenizer: PreTrainedTokenizerBase, text: str, tokens: int) -> str:
    """The end of `text` holding about `tokens` tokens (decoded back, so the template renders it as text)."""
    ids = _token_ids(tokenizer, text)
    return tokenizer.decode(ids[len(ids) - tokens:], skip_special_tokens=False) if tokens > 0 else ""


def _prompt_from_end(problem: Problem, tokens: int, tokenizer: PreTrainedTokenizerBase) -> Problem:
    """The problem with its start cut to about `tokens` tokens; for a message list, the earliest turns go first."""
    if isinstance(problem, str):
        return _keep_last(tokenizer, problem, tokens)
    kept: list[dict[str, str]] = []
    for message in reversed(problem):
        length = len(_token_ids(tokenizer, message["content"]))
        if length <= tokens:
            kept.insert(0, message)
            tokens -= length
        else:
            kept.insert(0, {**message, "content": _keep_last(tokenizer, message["content"], tokens)})
            tokens = 0
    return kept


def _fit(render, full_length: int, budget: int) -> tuple[list[int], bool]:
    """Shrink the part `render(tokens)` keeps until the rendered ids fit `budget`: (ids, whether they fit)."""
    keep = full_length
    while True:
        ids = render(keep)
        if len(ids) <= budget or keep <= 0:
            return ids, len(ids) <= budget
        keep = max(0, keep - max(1, len(ids) - budget))


def encode_for_scoring(tokenizer: PreTrainedTokenizerBase, problem: Problem, answer: str, budget: int | None,
                       reward_token_id: int | None = None) -> ScoringEncoded:
    """Token ids scored for (problem, answer) within `budget` tokens (None: no limit), cutting the prompt's start.

    The whole conversation when it fits; else the start of the prompt is cut (token-wise, then re-rendered so the
    template's own tokens stay); if even an empty prompt leaves no room, the start of the answer is cut as well.
    The answer's end and the reward token are always scored.
    """
    suffix = [] if reward_token_id is None else [reward_token_id]

    def render(prompt: Problem, text: str) -> list[int]:
        return _token_ids(tokenizer, format_conversation(tokenizer, prompt, text)) + suffix

    ids = render(problem, answer)
    if budget is None or len(ids) <= budget:
        return ScoringEncoded(ids)
    prompt_tokens = len(_token_ids(tokenizer, problem if isinstance(problem, str)
                                   else "".join(m["content"] for m in problem)))
    ids, fits = _fit(lambda keep: render(_prompt_from_end(problem, keep, tokenizer), answer), prompt_tokens, budget)
    if fits:
        return ScoringEncoded(ids, CUT_PROMPT)
    empty = _prompt_from_end(problem, 0, tokenizer)
    ids, _ = _fit(lambda keep: render(empty, _keep_last(tokenizer, answer, keep)),
                  len(_token_ids(tokenizer, answer)), budget)
    return ScoringEncoded(ids, CUT_ANSWER)
