"""The one dataset loader: Hub names, `save_to_disk` directories and local files, sampled with a seed.

Every script reads its inputs through `load_datasets`, so a path that works for generation also works
for training, evaluation and selection.
"""

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from reward_transfer.errors import UserError
from reward_transfer.storage import looks_like_local_path

log = logging.getLogger(__name__)

PAIR_COLUMNS = ("problem", "accepted", "rejected")  # what every pair dataset has (generation writes more)
# The same roles in TRL's and RewardBench's preference format, read when a dataset lacks ours.
TRL_PAIR_COLUMNS = {"problem": "prompt", "accepted": "chosen", "rejected": "rejected"}
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_FILE = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<file>.+)$")


def load_table(name_or_path: str, split: str = "train") -> Dataset:
    """Load one split of a Hub dataset, a file of a Hub dataset repo, a `save_to_disk` directory or a local data file."""
    if name_or_path.startswith("hf://"):
        return _load_hub_file(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (
        (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists() or (path / "state.json").exists()
    ):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise UserError(f"{name_or_path}: no split '{split}' (splits: {', '.join(loaded)})")
            return loaded[split]
        return loaded
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise UserError(f"{name_or_path}: unsupported file type (use {', '.join(FILE_BUILDERS)})")
        if not path.read_bytes()[:4096].strip():
            raise UserError(f"{name_or_path}: the file is empty")
        try:
            table = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as err:  # the builders raise many types for malformed files
            raise UserError(f"{name_or_path}: cannot read as {builder}: {err}") from err
        return _file_split(table, name_or_path, split)
    if looks_like_local_path(name_or_path) or path.suffix in FILE_BUILDERS:
        what = "is not a dataset directory" if path.exists() else "does not exist"
        raise UserError(f"dataset path {name_or_path} {what}")
    try:
        return datasets.load_dataset(name_or_path, split=split)
    except Exception as err:
        if "scripts are no longer supported" in str(err):
            raise UserError(
                f"dataset '{name_or_path}' is a loading-script dataset, which datasets>=4 cannot run; point "
                f"dataset.datasets[].name_or_path at its data files instead, e.g. hf://datasets/{name_or_path}/train.jsonl"
            ) from err
        raise UserError(
            f"cannot load dataset '{name_or_path}' (split {split}) from the Hugging Face Hub: {err.__class__.__name__}"
            ". Offline? Point dataset.datasets[].name_or_path at a local directory or file instead."
        ) from err


def _file_split(table: Dataset, source: str, split: str) -> Dataset:
    """One file holds one split: the rows of its `split` column that name `split`, else the whole file when
    `train` is asked for; any other split of a file without that column is refused (never silently train)."""
    if "split" in table.column_names:
        rows = table.filter(lambda value: value == split, input_columns="split", keep_in_memory=True)
        if len(rows) == 0:
            raise UserError(f"{source}: no rows with split '{split}' (splits: {', '.join(sorted(set(table['split'])))})")
        return rows
    if split != "train":
        raise UserError(f"{source}: a file without a 'split' column is one split (train); split '{split}' needs a "
                        "file of its own or a 'split' column")
    return table


def _load_hub_file(url: str) -> Dataset:
    """`hf://datasets/<owner>/<name>[@revision]/<file>`: one data file of a Hub dataset repo, downloaded into the
    Hub cache (resumable, reused offline) and read with the builder its suffix names. This is how script datasets
    such as `codeparrot/apps` (whose `apps.py` datasets>=4 refuses to run) are read: their raw files."""
    match = HUB_FILE.match(url)
    if match is None:
        raise UserError(f"{url}: not a Hub data file (use hf://datasets/<owner>/<name>[@revision]/<file>)")
    builder = FILE_BUILDERS.get(Path(match["file"]).suffix)
    if builder is None:
        raise UserError(f"{url}: unsupported file type (use {', '.join(FILE_BUILDERS)})")
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(match["repo"], match["file"], repo_type="dataset", revision=match["revision"])
    except Exception as err:  # offline, no access, no such repo or file: the Hub client raises many types
        raise UserError(f"cannot download {url} from the Hugging Face Hub ({err.__class__.__name__}). Offline or "
                        "no access? Download it once, or point the config at a local copy") from err
    try:
        return datasets.load_dataset(builder, data_files=local, split="train")
    except Exception as err:
        raise UserError(f"{url}: cannot read as {builder}: {err}") from err


def sample_rows(dataset: Dataset, max_examples: int | None, seed: int, source: str = "dataset") -> Dataset:
    """Seeded shuffle, then the first `max_examples` rows: a smaller sample is a prefix of a larger one."""
    shuffled = dataset.shuffle(seed=seed, keep_in_memory=True)
    if max_examples is None:
        return shuffled
    if max_examples > len(shuffled):
        log.warning("%s: max_examples=%d but only %d rows; using all rows", source, max_examples, len(shuffled))
        return shuffled
    return shuffled.select(range(max_examples), keep_in_memory=True)


def _is_messages(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value)


def _split_conversation(prompt: object, side: object, source: str, row: int, column: str) -> tuple[object, str]:
    """(prompt, answer) of one side: a string answer, or a conversation whose final assistant turn is the answer
    and whose earlier turns (when no prompt column is given) are the prompt."""
    if isinstance(side, str):
        return prompt, side
    if not _is_messages(side) or not side or side[-1].get("role") != "assistant":
        raise UserError(f"{source}: row {row}, column {column}: expected a string or a message list ending with "
                        "an assistant turn")
    turns = side[:-1]
    if prompt is None:
        prompt = turns
    elif turns:
        prompt = [*([{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt), *turns]
    return prompt, side[-1]["content"]


def _simplify(prompt: object) -> object:
    """A prompt that is one user turn becomes that turn's text (the form generation writes and the tables read)."""
    if _is_messages(prompt) and len(prompt) == 1 and prompt[0].get("role") == "user":
        return prompt[0]["content"]
    return [{"role": m["role"], "content": m["content"]} for m in prompt] if _is_messages(prompt) else prompt


def as_pairs(table: Dataset, source: str, columns: Mapping[str, str] | None = None) -> Dataset:
    """The table with the pair columns problem / accepted / rejected, from any preference format.

    `columns` names the table's own columns for these roles (e.g. {problem: question}); unnamed roles use this
    project's names, else TRL's / RewardBench's `prompt` / `chosen` / `rejected`. Sides may be strings or
    conversational message lists (TRL's explicit or implicit prompt: the shared leading turns are the prompt).
    Other columns (subset, pair_id, ...) are kept.
    """
    columns = dict(columns or {})
    unknown = set(columns) - set(PAIR_COLUMNS)
    if unknown:
        raise UserError(f"{source}: columns: unknown role(s) {', '.join(sorted(unknown))} (roles: "
                        f"{', '.join(PAIR_COLUMNS)})")
    chosen = {role: columns.get(role) or (role if role in table.column_names else TRL_PAIR_COLUMNS[role])
              for role in PAIR_COLUMNS}
    implicit = chosen["problem"] not in table.column_names and "problem" not in columns
    require_columns(table, [c for role, c in chosen.items() if not (implicit and role == "problem")], source)
    if chosen == {role: role for role in PAIR_COLUMNS} and not implicit:
        sample = table[0] if len(table) else {}
        if all(isinstance(sample.get(c), str) for c in PAIR_COLUMNS) or not len(table):
            return table  # already this project's pair format

    def convert(row: dict, index: int) -> dict:
        prompt = None if implicit else row[chosen["problem"]]
        prompt_a, accepted = _split_conversation(prompt, row[chosen["accepted"]], source, index, chosen["accepted"])
        prompt_r, rejected = _split_conversation(prompt, row[chosen["rejected"]], source, index, chosen["rejected"])
        if implicit and prompt_a != prompt_r:
            raise UserError(f"{source}: row {index}: the {chosen['accepted']} and {chosen['rejected']} conversations "
                            "start with different turns, so they share no prompt")
        if not isinstance(prompt_a, str) and not _is_messages(prompt_a):
            raise UserError(f"{source}: row {index}, column {chosen['problem']}: expected a string or messages")
        return {"problem": _simplify(prompt_a), "accepted": accepted, "rejected": rejected}

    renamed = [c for c in chosen.values() if c in table.column_names]
    keep = [c for c in table.column_names if c not in renamed and c not in PAIR_COLUMNS]
    rows = [{**{c: table[i][c] for c in keep}, **convert(table[i], i)} for i in range(len(table))]
    return Dataset.from_list(rows)


def require_columns(dataset: Dataset, columns: Iterable[str], source: str) -> None:
    """Fail with a message naming the missing column(s) and listing the ones that exist."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserError(
            f"{source}: missing column(s) {', '.join(missing)}; columns are: {', '.join(dataset.column_names)}"
        )


def load_datasets(
    specs: Sequence,
    max_examples: int | None = None,
    seed: int = 42,
    required_columns: Iterable[str] = (),
) -> Dataset:
    """Load and mix `specs` (each with `name_or_path`, `split`, `ratio`), then sample `max_examples` rows.

    Each dataset is shuffled with `seed` and its first `ratio` share kept; the mix is shuffled again and
    cut to `max_examples` (None: all rows). Same seed, larger `max_examples` gives a superset.
    """
    if not specs:
        raise UserError("dataset.datasets is empty: give at least one {name_or_path, split, ratio}")
    parts = []
    for spec in specs:
        table = load_table(spec.name_or_path, spec.split)
        if set(PAIR_COLUMNS) <= set(required_columns):
            table = as_pairs(table, spec.name_or_path, getattr(spec, "columns", None))
        require_columns(table, required_columns, spec.name_or_path)
        if not 0 < spec.ratio <= 1:
            raise UserError(f"{spec.name_or_path}: ratio must be in (0, 1], got {spec.ratio}")
        if spec.ratio < 1:
            table = table.shuffle(seed=seed, keep_in_memory=True).select(
                range(round(len(table) * spec.ratio)), keep_in_memory=True)
        parts.append(table)
    mixed = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    sampled = sample_rows(mixed, max_examples, seed, source=", ".join(s.name_or_path for s in specs))
    if len(sampled) == 0:
        raise UserError(f"{', '.join(s.name_or_path for s in specs)}: no rows left after sampling")
    return sampled
