"""report.py on a hand-made run folder: numbers, bold, S_T, missing cells, best-of-n, --paper, figures."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from reward_transfer import run_layout as layout
from reward_transfer.report_tables import mcnemar_p, transferability
from reward_transfer.reporting import write_report

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ACCURACY = {
    "math_scratch": 0.80,
    "math_5": 0.55, "math_15": 0.82,  # one fine-tune on as many random pairs as AL rounds 1 and 3 selected
    "math_0k": 0.60, "math_20": 0.78, "math_40": 0.81, "math_60": 0.83,
    "code_scratch": 0.70,
    "code_0k": 0.50, "code_40": 0.72,  # 20 and 60 missing: a partial run
    "math_to_code_0k": 0.40, "math_to_code_20": 0.50, "math_to_code_40": 0.60, "math_to_code_60": 0.65,
    "active_learning_math_margin_r1": 0.70, "active_learning_math_margin_r2": 0.79,
    "active_learning_math_margin_r3": 0.81,
    "active_learning_math_random_r1": 0.72, "active_learning_math_random_r2": 0.75,
}


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _write(layout.grid_file(run), {
        "domains": ["math", "code"], "sizes": [20, 40, 60], "full_size": {"math": 60, "code": 60},
        "al": {"rounds": 3, "pairs_per_round": 5},
    })
    for name, accuracy in ACCURACY.items():
        _write(layout.eval_dir(run, name) / "results.json",
               {"accuracy": accuracy, "num_pairs": 100, "ci95": [accuracy - 0.01, accuracy + 0.01]})
    _write(layout.eval_dir(run, "math_scratch_best_of_n") / "results.json",
           {"mode": "best_of_n", "accuracy": 0.5, "best_of_n_accuracy": 0.5, "oracle_accuracy": 0.9,
            "first_sample_accuracy": 0.3, "random_pick_accuracy": 0.31, "num_problems": 10})
    for name, size in (("math_scratch", 60), ("math_20", 20), ("math_to_code_40", 40)):
        steps = max(2, size // 4)
        history = [{"step": i + 1, "epoch": (i + 1) / steps, "loss": 0.7 - 0.3 * i / steps, "learning_rate": 5e-5}
                   for i in range(steps)]
        _write(layout.model_dir(run, name) / "log_history.json", [*history, {"train_runtime": 1.0, "epoch": 1.0}])
    return run


def table_row(markdown: str, *first_cells: str) -> list[str]:
    """The cells of the first markdown table row that starts with `first_cells`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[: len(first_cells)] == list(first_cells):
            return cells
    raise AssertionError(f"no row {first_cells} in:\n{markdown}")


def test_table1_numbers_intervals_separated_bold_transferability_and_missing_cells(run: Path) -> None:
    report = write_report(run)
    md = report.tables_md.read_text()
    assert "| domain | start | eval pairs | R_truth | 0k | 20 | 40 | 60 | S_T |" in md
    # Reaches R_truth (0.80) first at 40 of 60 pairs: S_T = 1 - 40/60. 0.83 is the best of its row, but its
    # interval (0.82–0.84) touches 0.81's (0.80–0.82): not bold.
    assert table_row(md, "math", "R_gen") == ["math", "R_gen", "100", "0.8000 (0.79–0.81)", "0.6000 (0.59–0.61)",
                                         "0.7800 (0.77–0.79)", "0.8100 (0.80–0.82)", "0.8300 (0.82–0.84)", "0.3333"]
    # 20 is missing, so reaching at 40 only bounds S_T from below.
    assert table_row(md, "code", "R_gen")[4:] == ["0.5000 (0.49–0.51)", "—", "0.7200 (0.71–0.73)", "—", "≥0.3333"]
    assert table_row(md, "code", "R_math")[-2:] == ["0.6500 (0.64–0.66)", "not reached"]
    assert table_row(md, "code", "R_math")[3] == "**0.7000 (0.69–0.71)**"  # its interval is above every other one
    assert table_row(md, "math", "R_code") == ["math", "R_code", "100", "0.8000 (0.79–0.81)", "—", "—", "—", "—", "—"]
    assert "Pipeline check" not in md


def test_table2_one_row_per_strategy_and_the_one_shot_baseline(run: Path) -> None:
    md = write_report(run).tables_md.read_text()
    assert "| domain | selection | eval pairs | R_truth | 5 | 10 | 15 | S_T | labels to R_truth |" in md
    assert table_row(md, "math", "AL margin")[3:] == ["0.8000 (0.79–0.81)", "0.7000 (0.69–0.71)", "0.7900 (0.78–0.80)",
                                                 "0.8100 (0.80–0.82)", f"{1 - 15 / 60:.4f}", "15"]
    assert table_row(md, "math", "random (AL loop)")[4:] == ["0.7200 (0.71–0.73)", "0.7500 (0.74–0.76)", "—",
                                                        "not reached (so far)", "not reached (so far)"]
    assert table_row(md, "math", "random pairs, one fine-tune")[4:] == ["0.5500 (0.54–0.56)", "—", "0.8200 (0.81–0.83)",
                                                                   f"≥{1 - 15 / 60:.4f}", "≤15"]
    assert "(" not in "".join(table_row(md, "code", "AL margin")[4:])  # nothing to show: no nested brackets either


def test_best_of_n_table_and_latex(run: Path) -> None:
    report = write_report(run)
    md = report.tables_md.read_text()
    assert "| domain | reward model | RM's pick correct | one sample (expected) | any candidate correct |" in md
    assert table_row(md, "math", "R_truth") == ["math", "R_truth", "0.5000", "0.3100", "0.9000", "10", "—"]
    tex = report.tables_tex.read_text()
    assert r"\textbf{0.7000 (0.69--0.71)}" in tex.replace("–", "--") and r"\begin{tabular}" in tex and "---" in tex
    assert "**" not in tex and "_" not in tex.replace(r"\_", "").replace("$R_", "").replace("$S_", "")


def test_transfer_matrix_with_diagonal_and_asymmetry(run: Path) -> None:
    md = write_report(run).tables_md.read_text()
    assert "| source RM | on math, 0k | on math, 60 | on code, 0k | on code, 60 |" in md
    assert table_row(md, "R_math")[1:] == ["0.8000 (0.79–0.81)", "0.8000 (0.79–0.81)", "0.4000 (0.39–0.41)",
                                      "0.6500 (0.64–0.66)"]
    assert table_row(md, "R_code")[1:3] == ["—", "—"]  # the code RM was never run on math
    assert table_row(md, "asymmetry math→code − code→math")[3:] == ["—", "—"]


def test_grid_metadata_places_results_whatever_their_names_and_lists_the_rest(tmp_path: Path) -> None:
    """A run written by reproduce.py says what each result is; names are not parsed, so any strategy works."""
    run = tmp_path / "run"
    accuracy = {"truth-of-math": 0.8, "al-1": 0.7, "al-2": 0.75, "rnd-1": 0.6, "rnd-2": 0.65}
    cells = {"truth-of-math": {"domain": "math", "kind": "truth"},
             "al-1": {"domain": "math", "kind": "al", "size": 5, "strategy": "max_entropy", "round_index": 1},
             "al-2": {"domain": "math", "kind": "al", "size": 10, "strategy": "max_entropy", "round_index": 2},
             "rnd-1": {"domain": "math", "kind": "al", "size": 5, "strategy": "random", "round_index": 1},
             "rnd-2": {"domain": "math", "kind": "al", "size": 10, "strategy": "random", "round_index": 2}}
    _write(layout.grid_file(run), {
        "profile": "tiny", "pipeline_check": True, "models": {"general": "g", "sft": {"math": "s"}},
        "domains": ["math"], "sizes": [], "full_size": {"math": 20},
        "al": {"rounds": 2, "pairs_per_round": 5, "strategies": ["max_entropy", "random"]},
        "results": {name: {**cell, "mode": "pairs", "model": name, "results": f"eval/{name}/results.json"}
                    for name, cell in cells.items()}})
    rng = random.Random(0)
    pair_ids = [f"p{i}" for i in range(200)]
    for name, share in accuracy.items():
        wins = [rng.random() < share for _ in pair_ids]
        _write(layout.eval_dir(run, name) / "results.json",
               {"accuracy": sum(wins) / len(wins), "num_pairs": 200, "ci95": [0.0, 1.0]})
        (layout.eval_dir(run, name) / "scores.jsonl").write_text("".join(
            json.dumps({"pair_id": pid, "chosen": 1.0 if won else 0.0, "rejected": 0.5}) + "\n"
            for pid, won in zip(pair_ids, wins, strict=True)))
    _write(layout.eval_dir(run, "math_20k") / "results.json", {"accuracy": 0.5, "num_pairs": 3})  # not in the grid

    md = write_report(run).tables_md.read_text()
    assert "Pipeline check, not a result" in md and "Profile **tiny**" in md
    assert table_row(md, "math", "AL max_entropy")[4] == _fmt_cell(accuracy_of(run, "al-1"))
    tests = [table_row(md, "math", f"AL max_entropy vs random, round {k}") for k in (1, 2)]
    assert all(row[2] == "200" and 0 <= float(row[-1]) <= 1 for row in tests)
    s_t, labels = table_row(md, "math", "AL max_entropy")[-2:]
    assert "95%:" in s_t or s_t == "not reached"
    assert labels in ("5", "10", "not reached")
    assert table_row(md, "math_20k") == ["math_20k", "0.5000", "3"]  # listed under "not placed", not dropped


def test_the_dogerm_baseline_is_a_row_of_table1_and_of_the_transfer_matrix(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cells = {"math_scratch": ({"domain": "math", "kind": "truth"}, 0.8),
             "math_merge_sft": ({"domain": "math", "kind": "merge_sft", "size": 0, "source": "math"}, 0.7),
             "math_merge_sft_on_code": ({"domain": "code", "kind": "merge_sft", "size": 0, "source": "math"}, 0.55)}
    _write(layout.grid_file(run), {
        "domains": ["math", "code"], "sizes": [20], "full_size": {"math": 20, "code": 20},
        "results": {name: {**cell, "mode": "pairs", "model": name, "results": f"eval/{name}/results.json"}
                    for name, (cell, _) in cells.items()}})
    for name, (_, accuracy) in cells.items():
        _write(layout.eval_dir(run, name) / "results.json",
               {"accuracy": accuracy, "num_pairs": 100, "ci95": [accuracy - 0.01, accuracy + 0.01]})
    md = write_report(run).tables_md.read_text()
    assert table_row(md, "math", "R_gen ⊕ SFT_math")[3:] == ["0.8000 (0.79–0.81)", "0.7000 (0.69–0.71)", "",
                                                        "not reached without pairs"]
    assert table_row(md, "R_gen ⊕ SFT_math")[1:] == ["0.7000 (0.69–0.71)", "", "0.5500 (0.54–0.56)", ""]


def accuracy_of(run: Path, name: str) -> float:
    return json.loads((layout.eval_dir(run, name) / "results.json").read_text())["accuracy"]


def _fmt_cell(value: float) -> str:
    return f"{value:.4f} (0.00–1.00)"


def test_mcnemar_counts_only_discordant_pairs() -> None:
    assert mcnemar_p([True] * 10, [True] * 10) == 1.0
    assert mcnemar_p([True] * 10 + [False] * 10, [False] * 10 + [False] * 10) == pytest.approx(2 / 2**10)
    assert mcnemar_p([True, False] * 10, [False, True] * 10) == 1.0


def test_figures_are_pngs(run: Path) -> None:
    figures = write_report(run).figures
    assert {f.name for f in figures} == {
        "figure2_loss.png", "figure3_loss_cross.png", "accuracy_vs_size.png", "active_learning.png",
        "transfer_matrix.png"}
    for figure in figures:
        assert figure.read_bytes()[:8] == PNG_MAGIC


def test_empty_run_folder_gives_tables_of_dashes(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = write_report(tmp_path / "empty")
    md = report.tables_md.read_text()
    assert table_row(md, "math", "R_gen")[2:] == ["—"] * 4 and report.figures == []


def test_names_map_to_cells() -> None:
    assert layout.parse_name("math_to_code_2.5k") == layout.Cell("code", "cross", size=2500, source="math")
    assert layout.parse_name("code_60k") == layout.Cell("code", "finetune", size=60000)
    assert layout.parse_name("math_scratch") == layout.Cell("math", "truth")
    assert layout.parse_name("active_learning_code_random_r2") == layout.Cell(
        "code", "al", strategy="random", round_index=2)
    assert layout.parse_name("active_learning_math_large_gap_s7_r3") == layout.Cell(
        "math", "al", strategy="large_gap", round_index=3, seed=7)
    assert layout.parse_name("demo_math_best_of_n") is None
    for size in (0, 7, 2500, 7500, 20000):
        assert layout.parse_size(layout.size_label(size)) == size


def test_transferability_rules() -> None:
    assert transferability(0.8, {0: 0.81, 20: 0.9}, 60).text == "1.0000"
    assert transferability(0.8, {0: 0.5, 20: 0.8}, 60).value == pytest.approx(2 / 3)
    assert transferability(None, {0: 0.5}, 60).text == "—"
    assert transferability(0.8, {0: 0.5, 20: 0.7}, 60).text == "not reached"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "report.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_paper_puts_published_numbers_beside_ours(run: Path) -> None:
    result = _cli(str(run), "--paper", "--out", str(run / "vs_paper"))
    assert result.returncode == 0, result.stderr
    md = (run / "vs_paper" / "tables.md").read_text()
    # Our scaled-down columns are paired with the paper's 0k/20k/40k/60k by position, and the table says so.
    math_gen = table_row(md, "math", "R_gen")
    assert math_gen[3] == "0.8000 (0.79–0.81); paper 0.8681, −0.0681"
    assert math_gen[7] == "0.8300 (0.82–0.84); paper 0.8909, −0.0609"
    assert table_row(md, "math", "R_code")[4] == "—; paper 0.6883"
    assert "Paper columns paired by position: 20 ↔ 20k, 40 ↔ 40k, 60 ↔ 60k." in md
    assert table_row(md, "math", "AL margin")[4] == "0.7000 (0.69–0.71); paper 0.8560, −0.1560"
    assert "5 ↔ 2.5k, 10 ↔ 5k, 15 ↔ 7.5k" in md
    # Each table shows the R_truth the paper printed in it: 0.8681/0.7843 in Table 1, 0.8700/0.7746 in Table 2.
    table1, table2 = md.split("Table 2", 1)
    assert "paper 0.8681" in table1 and "paper 0.7843" in table1 and "0.8700" not in table1
    assert "paper 0.8700" in table2 and "paper 0.7746" in table2 and "0.8681" not in table2


def test_cli_missing_run_folder_is_a_one_line_error(tmp_path: Path) -> None:
    result = _cli(str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: run folder {tmp_path / 'nope'} does not exist"]
