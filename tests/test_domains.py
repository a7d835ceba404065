"""Domains as a registry: the multiple-choice domain (strict letter extraction, pairs as math), unknown domains
refused in one line, and a fourth domain added as one module + its configs + its data, with no other edit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from datasets import load_from_disk
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from reward_transfer.domains import get_domain, known
from reward_transfer.errors import UserError
from reward_transfer.generation import generate_preference_data
from reward_transfer.grid.plan import plan_from_config
from reward_transfer.verifiers.choice import extract_choice

OPTIONS = ["2 m/s^2", "4 m/s^2", "5 m/s^2", "10 m/s^2"]


@pytest.mark.parametrize(("response", "letter"), [
    ("Reasoning...\n\nThe answer is \\boxed{B}.", "B"),
    ("\\boxed{\\text{C}}", "C"),
    ("\\boxed{(D)}", "D"),
    ("\\boxed{4 m/s^2}", "B"),  # the exact option text
    ("Checking each option, the answer is (C).", "C"),
    ("A is wrong and B too. The answer is D", "D"),
    ("Working it out gives 5 m/s^2.\n\n(C)", "C"),
    ("So it must be 10 m/s^2.", None),  # option text inside a sentence: not committed to
    ("10 m/s^2", "D"),  # a final line that is exactly an option
    ("Options A and B can be ruled out, but I cannot decide.", None),  # stray letters never count
    ("The answer is a prime number.", None),  # lower-case 'a' is a word
    ("\\boxed{F}", None),  # no option F
    ("\\boxed{B or C}", None),  # a box that is not one answer: no fallback to the text
    ("The answer is (B). On reflection, the answer is \\boxed{C}.", "C"),  # the box wins
])
def test_choice_extraction_is_strict(response, letter):
    assert extract_choice(response, OPTIONS) == letter


def test_registry_knows_the_domains_and_refuses_unknown_ones_in_one_line(tmp_path):
    assert {"math", "code", "mcq"} <= set(known())
    with pytest.raises(UserError, match=r"^domain: unknown domain 'chem' \(known: code, math, mcq"):
        get_domain("chem")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "reproduce"), version_base="1.3"):
        cfg = compose("config", overrides=["profile.domains=[math,chem]", f"output_dir={tmp_path}"])
    with pytest.raises(UserError, match=r"profile\.domains: unknown domain 'chem'"):
        plan_from_config(cfg)


def test_mcq_demo_pairs_are_correct_vs_incorrect_and_stem_only(tmp_path):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "generate_preference_data"), version_base="1.3"):
        cfg = compose("demo_mcq", overrides=[f"output_dir={tmp_path / 'out'}", "progress=false"])
    generate_preference_data(cfg)
    manifest = json.loads((tmp_path / "out" / "generation_manifest.json").read_text())
    assert manifest["summary"]["skipped"] == {"category not kept (dataset.keep)": 2}  # history, law
    pairs = load_from_disk(str(tmp_path / "out"))
    rows = pairs["train"].to_list() + pairs["eval"].to_list()
    assert all(r["accepted_score"] == 1.0 and r["rejected_score"] == 0.0 for r in rows)
    per_question = {}
    for row in rows:
        per_question[row["problem_id"]] = per_question.get(row["problem_id"], 0) + 1
        assert "\nOptions:\nA. " in row["problem"]  # the reward model sees the lettered options
    assert max(per_question.values()) <= 4
    candidates = load_from_disk(str(tmp_path / "out" / "candidates"))
    undecided = [c for c in candidates if "cannot decide" in c["response"]]
    assert undecided and all(c["answer"] == "" and not c["correct"] for c in undecided)


def test_the_tiny_grid_has_every_ordered_transfer_of_its_three_domains(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "reproduce"), version_base="1.3"):
        cfg = compose("config", overrides=[f"output_dir={tmp_path}"])
    names = {step.name for step in plan_from_config(cfg).steps}
    domains = ["math", "code", "mcq"]
    for target in domains:
        for source in domains:
            if source != target:
                assert {f"train/{source}_to_{target}_120", f"eval/{source}_to_{target}_0k"} <= names


TOY_DOMAIN = '''"""Parity: is the number even or odd? A toy fourth domain, as a researcher would add one."""

from datasets import Value

from reward_transfer.domains import Domain, binary_level


def read(row, columns):
    return row[columns["problem"]], row[columns["label"]], ""


def label(flat, verifier_cfg):
    words = [response.strip().rstrip(".").split()[-1].lower() if response.strip() else "" for _, _, response in flat]
    return [{"score": float(word == problem.reference), "correct": word == problem.reference, "said": word}
            for (problem, _, _), word in zip(flat, words, strict=True)]


DOMAIN = Domain(name="parity", columns={"problem": "question", "label": "label"}, required=("problem", "label"),
                read=read, label=label, candidate_features={"said": Value("string")}, level=binary_level)
'''


def _repo_copy(target: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied to `target`: a checkout to add a domain to."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        if (REPO_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target / name)
    return target


def test_a_fourth_domain_is_one_module_one_config_its_prompt_and_its_data(tmp_path, tiny_models):
    repo = _repo_copy(tmp_path / "repo")
    (repo / "reward_transfer/domains/parity.py").write_text(TOY_DOMAIN)
    numbers = range(2, 26)
    (repo / "data/parity_problems.jsonl").write_text("".join(
        json.dumps({"question": f"Is {n} even or odd?", "label": "even" if n % 2 == 0 else "odd"}) + "\n"
        for n in numbers))
    (repo / "data/replay_parity.jsonl").write_text("".join(json.dumps({"problem": f"Is {n} even or odd?", "responses": [
        f"{n} ends in {n % 10}, so it is {'even' if n % 2 == 0 else 'odd'}.", f"It is {'odd' if n % 2 == 0 else 'even'}.",
        f"Halving {n} leaves {n % 2}: {'even' if n % 2 == 0 else 'odd'}", "Hard to say."]}) + "\n" for n in numbers))
    (repo / "prompt_templates/parity.txt").write_text("{problem}\n\nEnd with the word even or odd.\n")
    configs = {
        "generate_preference_data/demo_parity.yaml": """defaults: [base, _self_]
dataset:
  datasets: [{name_or_path: data/parity_problems.jsonl, split: train}]
  ground_truth_type: parity
  eval_fraction: 0.25
prompt: {template: prompt_templates/parity.txt}
generation: {backend: replay, replay_path: data/replay_parity.jsonl, num_samples_per_problem: 4}
paths: {root: outputs/demo}
""",
    }
    for name, text in configs.items():
        (repo / "configs" / name).write_text(text)
    # Everything the new domain needed: its module, its data (problems and replayed answers), its prompt and the
    # one config that says where its problems come from. Training, evaluation and selection run by `domain=`.
    added = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True,
                           text=True).stdout if (repo / ".git").exists() else None
    assert added is None or len(added.splitlines()) == 5
    assert len([path for path in (repo / "reward_transfer/domains/parity.py", repo / "data/parity_problems.jsonl",
                                  repo / "data/replay_parity.jsonl", repo / "prompt_templates/parity.txt",
                                  *(repo / "configs" / name for name in configs)) if path.is_file()]) == 5
    tiny = tiny_models["lm"].parent
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "reproduce.py", f"output_dir={run}", "profile.domains=[math,parity]",
         f"profile.tiny_models={tiny}", f"profile.models.general={tiny_models['rm']}",
         f"profile.models.sft.math={tiny_models['lm']}", f"profile.models.sft.parity={tiny_models['lm']}",
         "profile.sft.train=false",  # the toy domain has no reference solutions to fine-tune on
         "only=[setup,generate,train/parity_scratch,merge/parity_scratch,eval/math_0k,eval/parity_scratch,"
         "eval/parity_to_math_0k,report]"],
        cwd=repo, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parity_to_math_120" in (run / "commands.sh").read_text()  # the grid derives the new transfers
    grid = json.loads((run / "grid.json").read_text())
    assert grid["results"]["parity_to_math_0k"]["source"] == "parity"
    md = (run / "tables.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| R_parity |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] != "—" and cells[3] != "—"  # the parity RM on math (0k) and on parity (its own R_truth)
