"""Multiple-choice answers: the final letter a response commits to, read strictly (never guessed from stray
letters in the reasoning).

Accepted, the last one found wins, in this order of trust: the last `\\boxed{}` (a letter, `(C)`, `\\text{C}`, or
an option's exact text — a box holding anything else is no answer), then the last "answer is C" / "answer is
(C)" / "answer: C", then a final line that is only a letter or `(C)`, then a final line (or "answer is …") that
is exactly one option's text.
"""

import re

LETTERS = "ABCDEFGHIJKLMNOP"
_BOX = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_WRAPPERS = re.compile(r"^\\(?:text|mathrm|textbf|mathbf)\s*\{(.*)\}$")
# "answer is" in any case; the letter itself only in capitals ("the answer is a prime" names no option).
_ANSWER_IS = re.compile(r"(?i:answer\s*(?:is|:))\s*:?\s*\(?([A-P])\)?(?![A-Za-z0-9])")
_ANSWER_TEXT = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+?)\s*\.?\s*$", re.IGNORECASE)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().rstrip(".").strip()).casefold()


def _letter(text: str, options: list[str]) -> str | None:
    """`C`, `(C)`, `C)`, `C.` (within the options) or an option's exact text → its letter."""
    text = text.strip()
    while (inner := _WRAPPERS.match(text)) is not None:
        text = inner.group(1).strip()
    match = re.fullmatch(r"\(?([A-P])[).:]?", text)
    if match and LETTERS.index(match.group(1)) < len(options):
        return match.group(1)
    wanted = _normalise(text)
    found = [LETTERS[i] for i, option in enumerate(options) if wanted and _normalise(option) == wanted]
    return found[0] if len(found) == 1 else None


def extract_choice(response: str, options: list[str]) -> str | None:
    """The letter `response` answers with, or None when it commits to none."""
    boxes = _BOX.findall(response)
    if boxes:
        return _letter(boxes[-1], options)
    stated = [m.group(1) for m in _ANSWER_IS.finditer(response)]
    stated = [letter for letter in stated if LETTERS.index(letter) < len(options)]
    if stated:
        return stated[-1]
    lines = [line for line in response.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].strip()
    if re.fullmatch(r"\(?[A-P]\)?\.?", last):
        return _letter(last.rstrip("."), options)
    said = _ANSWER_TEXT.search(last)
    return _letter(said.group(1), options) if said else _letter(last, options)
