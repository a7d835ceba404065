"""The report's table of the field's benchmarks: each final model of the grid on RewardBench v1, RewardBench 2 and
best-of-K correctness (`eval.py mode=<benchmark>`), each score with its 95% interval."""

from reward_transfer.benchmarks import RB1_SECTIONS

BENCHMARK_COLUMNS = {"rewardbench": ("RewardBench v1", "score"), "rewardbench2": ("RewardBench 2", "score"),
                     "best_of_k": ("best-of-K (PPE shape)", "best_of_k")}
NOTE = (
    "Each final model on the field's reward-model benchmarks, scored by their published rules "
    "(reward_transfer/benchmarks.py): RewardBench v1 — pairs, ties wrong, sections weighted by the official example "
    f"counts ({', '.join(RB1_SECTIONS)}), the mean of the sections present (no Prior Sets); RewardBench 2 — best-of-4, "
    "1/k credit for a tie at the top, the Ties subset by its own rule, the mean of the subsets; best-of-K — the "
    "top-scored response correct (PPE Correctness's shape), and in brackets the pairwise accuracy over "
    "(correct, incorrect) responses. 95% bootstrap intervals over pairs or prompts within subsets."
)


def _cell(result: dict | None, key: str) -> str:
    if result is None:
        return "—"
    value, interval = result.get(key), result.get(f"{key}_interval") or result.get("score_interval")
    text = "—" if value is None else f"{value:.3f}"
    if interval and value is not None:
        text += f" ({interval[0]:.2f}–{interval[1]:.2f})"
    if key == "best_of_k" and result.get("pairwise") is not None:
        text += f" [pairwise {result['pairwise']:.3f}]"
    return text


def benchmark_rows(results: dict[str, dict[str, dict]], describe) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model, in the order given (`describe(name)` labels it), one column per
    benchmark run."""
    present = [name for name in BENCHMARK_COLUMNS if any(name in by for by in results.values())]
    header = ["reward model", *(BENCHMARK_COLUMNS[name][0] for name in present)]
    rows = [[describe(model), *(_cell(by.get(name), BENCHMARK_COLUMNS[name][1]) for name in present)]
            for model, by in results.items()]
    return header, rows
