"""Stage 1 of the pipeline: sample candidates per problem, label them with the verifiers, build preference pairs.

Work is committed in batches, so an interrupted run resumes where it stopped and ends with the same dataset.
"""

import hashlib
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Value
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from reward_transfer.domains import get_domain
from reward_transfer.domains import known as known_domains
from reward_transfer.errors import UserError
from reward_transfer.generation.backends import BACKENDS, ReplayBackend, make_backend
from reward_transfer.generation.labels import label_candidates
from reward_transfer.generation.pairs import pair_id, problem_pairs
from reward_transfer.generation.problems import (
    Problem,
    assign_splits_by_pairs,
    load_problems,
    resolve_path,
    stable_hash,
)
from reward_transfer.generation.schema import RESUMABLE_KEYS, GeneratePreferenceDataConfig
from reward_transfer.generation.store import OutputStore
from reward_transfer.hub import push_dataset
from reward_transfer.rerun import result_settings
from reward_transfer.storage import ensure_writable

PAIR_FEATURES = Features({
    "problem": Value("string"), "accepted": Value("string"), "rejected": Value("string"),
    "pair_id": Value("string"), "problem_id": Value("string"), "domain": Value("string"),
    "accepted_score": Value("float64"), "rejected_score": Value("float64"),
    "accepted_index": Value("int64"), "rejected_index": Value("int64"),
})
CANDIDATE_FEATURES = {"problem_id": Value("string"), "problem": Value("string"), "split": Value("string"),
                      "domain": Value("string"), "candidate_index": Value("int64"), "response": Value("string"),
                      "score": Value("float64"), "correct": Value("bool")}  # + the domain's own columns


def generate_preference_data(cfg: DictConfig | GeneratePreferenceDataConfig) -> Path:
    """Run the generation stage for the composed config `cfg`; returns the output directory."""
    settings = to_settings(cfg)
    started = time.perf_counter()
    ensure_writable(settings.output_dir, "output_dir")
    problems, skipped = load_problems(settings)
    partition = {"seed": settings.seed, "sft_share": settings.dataset.sft_share,
                 "sft_share_problems": skipped.get("reserved for SFT (dataset.sft_share)", 0),
                 "rm_problem_ids": [p.problem_id for p in problems]}
    replay = None
    if settings.generation.backend == "replay":
        replay = ReplayBackend(settings.generation.replay_path, settings.generation.replay_delay_s)
        problems = _drop_missing_replays(problems, replay, settings.generation, skipped)

    store = OutputStore(settings.output_dir)
    config = _result_config(settings)
    fingerprint = _input_fingerprint(problems, settings)
    state = store.prepare(config, fingerprint, settings.overwrite)
    if state == "complete":
        store.remove_leftovers()
        print(f"generate_preference_data: {store.path} is already complete; nothing to do")
        print(format_summary(store.read_manifest()["summary"]))
        if settings.huggingface.push_to_hub:  # a push that failed after the run is retried by running it again
            push_dataset(DatasetDict.load_from_disk(str(store.path)), settings.huggingface.repo_id,
                         settings.huggingface.private, retry="rerun the same command")
        return store.path

    done = store.committed_problem_ids()
    remaining = [p for p in problems if p.problem_id not in done]
    backend = replay if replay is not None else (make_backend(settings) if remaining else None)
    store.start(config, OmegaConf.to_yaml(OmegaConf.structured(settings)), fingerprint)
    tracker = _start_wandb(settings)

    generated, generation_time = _generate_in_batches(backend, remaining, len(problems), store, settings, tracker)

    pairs, candidates = build_datasets(problems, list(store.candidates()), settings)
    summary = _summary(settings, problems, skipped, candidates, pairs, generated, generation_time,
                       time.perf_counter() - started)
    store.publish(pairs, candidates, summary, partition)
    if settings.huggingface.push_to_hub:
        push_dataset(pairs, settings.huggingface.repo_id, settings.huggingface.private,
                     retry="rerun the same command (the complete output is kept; only the push is redone)")
    if tracker is not None:
        tracker.summary.update(summary)
        tracker.finish()
    print(format_summary(summary))
    return store.path


# Batches labelled while the next one is sampled: the GPU does not wait for the verifiers, and at most this many
# sampled-but-uncommitted batches are lost to a kill (a resumed run samples them again).
BATCHES_IN_FLIGHT = 1


def _generate_in_batches(backend, remaining: list[Problem], total: int, store: OutputStore,
                         settings: GeneratePreferenceDataConfig, tracker) -> tuple[int, float]:
    """Sample batch by batch; each batch is labelled and committed on a labelling thread while the next one is
    sampled (in order, one labeller: shards are committed in sampling order). Returns candidates made, seconds."""
    domain = settings.dataset.ground_truth_type
    batch_size = settings.generation.problems_per_batch
    generated = 0
    started = time.perf_counter()

    def label_and_commit(batch: list[Problem], responses: list[list[str]]) -> tuple[int, list[dict]]:
        records = label_candidates(batch, responses, domain, settings.verifier)
        store.commit([p.problem_id for p in batch], records)
        return len(batch), records

    def finished(future: Future) -> None:
        nonlocal generated
        problems_done, records = future.result()
        generated += len(records)
        bar.update(problems_done)
        bar.set_postfix(candidates_per_s=f"{generated / max(time.perf_counter() - started, 1e-9):.1f}")
        if tracker is not None:
            tracker.log({"problems_done": bar.n, "candidates": generated,
                         "share_correct": sum(r["correct"] for r in records) / max(len(records), 1)})

    in_flight: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelling") as labeller, \
            tqdm(total=total, initial=total - len(remaining), unit="problem", desc=f"generating {domain}",
                 disable=not settings.progress) as bar:
        for start in range(0, len(remaining), batch_size):
            batch = remaining[start:start + batch_size]
            responses = backend.generate(batch, settings.generation.num_samples_per_problem)
            in_flight.append(labeller.submit(label_and_commit, batch, responses))
            while len(in_flight) > BATCHES_IN_FLIGHT:
                finished(in_flight.popleft())
        while in_flight:
            finished(in_flight.popleft())
    return generated, time.perf_counter() - started


def to_settings(cfg: DictConfig | GeneratePreferenceDataConfig) -> GeneratePreferenceDataConfig:
    """The config as a validated dataclass: unknown keys, wrong types and bad values are errors."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(GeneratePreferenceDataConfig), cfg)
        settings = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise UserError(f"config: {str(err).splitlines()[0]}") from err
    _validate(settings)
    return settings


def _validate(settings: GeneratePreferenceDataConfig) -> None:
    data, gen = settings.dataset, settings.generation
    checks = [
        (data.ground_truth_type in known_domains(),
         f"dataset.ground_truth_type: unknown domain '{data.ground_truth_type}' (known: {', '.join(known_domains())})"),
        (gen.backend in BACKENDS, f"generation.backend: unknown backend '{gen.backend}' (use one of {', '.join(BACKENDS)})"),
        (gen.backend != "replay" or gen.replay_path, "generation.replay_path: required with generation.backend=replay"),
        (gen.replay_missing in ("error", "skip"), f"generation.replay_missing: '{gen.replay_missing}' (use error or skip)"),
        (gen.num_samples_per_problem >= 1, "generation.num_samples_per_problem: must be at least 1"),
        (gen.problems_per_batch >= 1, "generation.problems_per_batch: must be at least 1"),
        (data.eval_fraction is None or 0 <= data.eval_fraction < 1, "dataset.eval_fraction: must be in [0, 1)"),
        (0 <= data.sft_share < 1, f"dataset.sft_share: must be in [0, 1), got {data.sft_share}"),
        (data.eval_size is None or data.eval_size >= 0, "dataset.eval_size: must be 0 or more"),
        (data.eval_pairs is None or data.eval_pairs >= 1, "dataset.eval_pairs: must be at least 1 (or null)"),
        (data.max_examples is None or data.max_examples >= 1,
         f"dataset.max_examples: must be positive or null, got {data.max_examples}"),
        (settings.preference.max_number_of_preferences_per_problem is None
         or settings.preference.max_number_of_preferences_per_problem >= 1,
         "preference.max_number_of_preferences_per_problem: must be at least 1 (or null for no cap)"),
        (not settings.huggingface.push_to_hub or settings.huggingface.repo_id,
         "huggingface.repo_id: required with huggingface.push_to_hub=true"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _drop_missing_replays(problems: list[Problem], replay: ReplayBackend, gen, skipped: Counter) -> list[Problem]:
    missing = replay.missing(problems)
    if not missing:
        return problems
    if gen.replay_missing == "error":
        shown = "; ".join(repr(p.problem[:60]) for p in missing[:3])
        raise UserError(
            f"{gen.replay_path}: no responses for {len(missing)} of {len(problems)} problems (e.g. {shown}); "
            "add them or set generation.replay_missing=skip to leave them out"
        )
    skipped["problem missing from the replay file"] += len(missing)
    missing_ids = {p.problem_id for p in missing}
    kept = [p for p in problems if p.problem_id not in missing_ids]
    if not kept:
        raise UserError(f"{gen.replay_path}: none of the {len(problems)} problems has responses in the replay file")
    return kept


def _result_config(settings: GeneratePreferenceDataConfig) -> dict:
    """The settings that decide the output (not speed or destination): what a resumed run must match."""
    return result_settings(asdict(settings), RESUMABLE_KEYS)


def _input_fingerprint(problems: list[Problem], settings: GeneratePreferenceDataConfig) -> str:
    parts = [p.problem_id + p.split + str(p.seed) + stable_hash(p.prompt, p.reference) for p in problems]
    if settings.generation.backend == "replay":
        with Path(resolve_path(settings.generation.replay_path)).open("rb") as handle:
            parts.append(hashlib.file_digest(handle, "sha256").hexdigest())
    return stable_hash(*parts)


def build_datasets(problems: list[Problem], records: list[dict], settings: GeneratePreferenceDataConfig
                   ) -> tuple[DatasetDict, Dataset]:
    """The pair DatasetDict (train/eval, by problem) and the candidates Dataset, in problem order."""
    domain = settings.dataset.ground_truth_type
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_problem[record["problem_id"]].append(record)
    cap = settings.preference.max_number_of_preferences_per_problem
    problem_rows: dict[str, list[dict]] = {}
    ordered_candidates = []
    for problem in problems:
        group = sorted(by_problem[problem.problem_id], key=lambda r: r["candidate_index"])
        ordered_candidates.extend(group)
        responses = [r["response"] for r in group]
        scores = [r["score"] for r in group]
        problem_rows[problem.problem_id] = [{
            "problem": problem.problem, "accepted": responses[accepted], "rejected": responses[rejected],
            "pair_id": pair_id(problem.problem, responses[accepted], responses[rejected]),
            "problem_id": problem.problem_id, "domain": domain,
            "accepted_score": scores[accepted], "rejected_score": scores[rejected],
            "accepted_index": accepted, "rejected_index": rejected,
        } for accepted, rejected in problem_pairs(problem.problem_id, responses, scores, cap, settings.seed)]
    if settings.dataset.eval_pairs is not None:
        splits = assign_splits_by_pairs({pid: len(rows) for pid, rows in problem_rows.items()},
                                        settings.dataset.eval_pairs, settings.seed)
        ordered_candidates = [{**record, "split": splits[record["problem_id"]]} for record in ordered_candidates]
    else:
        splits = {p.problem_id: p.split for p in problems}
    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    for pid, pair_rows in problem_rows.items():
        rows[splits[pid]].extend(pair_rows)
    pairs = DatasetDict({split: _table(split_rows, PAIR_FEATURES) for split, split_rows in rows.items()})
    candidates = _table(ordered_candidates,
                        Features({**CANDIDATE_FEATURES, **get_domain(domain).candidate_features}))
    return pairs, candidates


def _table(rows: list[dict], features: Features) -> Dataset:
    # Column-wise, so an empty split still gets its columns (from_list([]) would have none).
    return Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def _summary(settings, problems, skipped, candidates: Dataset, pairs: DatasetDict, generated: int,
             generation_time: float, total_time: float) -> dict:
    splits = Counter(dict(zip(candidates["problem_id"], candidates["split"], strict=True)).values())
    with_pairs = len(set(pairs["train"]["problem_id"]) | set(pairs["eval"]["problem_id"]))
    num_pairs = len(pairs["train"]) + len(pairs["eval"])
    return {
        "domain": settings.dataset.ground_truth_type,
        "output_dir": str(settings.output_dir),
        "problems": len(problems), "train_problems": splits["train"], "eval_problems": splits["eval"],
        "skipped": dict(skipped),
        "candidates": len(candidates),
        "share_correct": sum(candidates["correct"]) / max(len(candidates), 1),
        "train_pairs": len(pairs["train"]), "eval_pairs": len(pairs["eval"]),
        "pairs_per_problem": num_pairs / max(len(problems), 1),
        "problems_without_pairs": len(problems) - with_pairs,
        "generated_this_run": generated,
        "candidates_per_s": generated / generation_time if generation_time > 0 else 0.0,
        "seconds": round(total_time, 2),
        "warnings": _warnings(candidates, pairs),
    }


def _warnings(candidates: Dataset, pairs: DatasetDict) -> list[str]:
    """What makes the output useless for training or evaluation, said loudly instead of exiting quietly."""
    warnings = []
    correct = sum(candidates["correct"])
    if len(candidates) and correct in (0, len(candidates)):
        warnings.append(f"{'no' if correct == 0 else 'every'} candidate is correct ({correct} of {len(candidates)}): "
                        "a pair needs a correct and an incorrect answer to the same problem; check the model, "
                        "the prompt template and the answer extraction")
    for split in ("train", "eval"):
        if len(pairs[split]) == 0:
            warnings.append(f"the {split} split has 0 pairs")
    return warnings


def format_summary(summary: dict) -> str:
    """The one-screen end-of-run report."""
    skipped = ", ".join(f"{count} {reason}" for reason, count in summary["skipped"].items()) or "none"
    return "\n".join([
        f"generate_preference_data ({summary['domain']}) → {summary['output_dir']}",
        f"  problems    {summary['problems']} (train {summary['train_problems']}, eval {summary['eval_problems']});"
        f" skipped: {skipped}",
        f"  candidates  {summary['candidates']}, correct {summary['share_correct']:.1%}",
        f"  pairs       train {summary['train_pairs']}, eval {summary['eval_pairs']}; "
        f"{summary['pairs_per_problem']:.2f} per problem; problems without a pair: {summary['problems_without_pairs']}",
        f"  time        {summary['seconds']:.1f} s; {summary['generated_this_run']} candidates generated this run "
        f"({summary['candidates_per_s']:.1f}/s)",
        *(f"  WARNING     {warning}" for warning in summary.get("warnings", [])),
    ])


def _start_wandb(settings: GeneratePreferenceDataConfig):
    if not settings.logging.wandb:
        return None
    import wandb

    return wandb.init(project=settings.logging.project, name=settings.logging.run_name,
                      config=asdict(settings), job_type="generate_preference_data")


