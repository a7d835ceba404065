"""reproduce.py: the paper's grid as a command list, and skip/resume/failure on a tiny part of the real grid."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from reward_transfer import run_layout as layout
from reward_transfer.errors import UserError
from reward_transfer.grid.plan import plan_from_config
from reward_transfer.grid.reproduce import reproduce, select_steps
from reward_transfer.grid.running import compose_configs
from reward_transfer.grid.step import Step

REPO = Path(__file__).resolve().parent.parent
CHEAP = ["only=[setup,generate,eval/math_0k]"]  # tiny models, pair generation, one evaluation: seconds


def _config(run: Path, tiny_models: dict[str, Path], *overrides: str):
    """The reproduce config as `reproduce.py <overrides>` composes it, on the session's tiny models, math only."""
    tiny = tiny_models["lm"].parent
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        return compose("config", overrides=[
            f"output_dir={run}", "profile.domains=[math]", f"profile.tiny_models={tiny}",
            f"profile.models.general={tiny_models['rm']}", f"profile.models.sft.math={tiny_models['lm']}",
            *overrides,
        ])


def _statuses(results) -> dict[str, str]:
    return {r.step: r.status for r in results}


def build_grid(cfg) -> list[Step]:
    """The steps reproduce.py plans for a composed config."""
    return plan_from_config(cfg).steps


def test_dry_run_of_the_paper_profile_lists_every_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "reproduce.py", "profile=paper", "dry_run=true", f"output_dir={tmp_path}",
         "profile.domains=[math,code,mcq]", "profile.sft.train=true"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    script = (tmp_path / "commands.sh").read_text()
    assert script in result.stdout + "\n" or script.strip() in result.stdout
    commands = [line for line in script.splitlines() if line and not line.startswith(("#", "set "))]
    config_names = {line.split("--config-name=")[1].split()[0] for line in commands if "--config-name=" in line}
    # Training by role, evaluation and selection by their generic configs; generation and SFT per domain.
    assert {"truth", "finetune", "cross", "active_learning_initial", "active_learning", "base", "initial", "math",
            "code", "mcq"} == config_names
    assert all(line.startswith("accelerate launch --config_file=deepspeed/1_1GPU.yaml") for line in commands
               if " train_reward_model.py " in line or " eval.py " in line)
    assert all(f"paths.root={tmp_path} seed=42" in line for line in commands if "--config-name=" in line)
    for domain in ("math", "code"):
        for strategy in ("margin", "random"):
            for k in (1, 2, 3):
                name = layout.active_learning_name(domain, strategy, k)
                for kind in ("train_reward_model.py", "eval.py", "merge_peft_model.py"):
                    assert any(kind in c and f"{name} " in c + " " for c in commands), (kind, name)
                state = layout.al_state_dir(tmp_path, domain, strategy, k)
                assert any(f"dataset.output_dataset_name_or_path={state} " in c and f"selection.strategy={strategy}"
                           in c for c in commands if "active_data_selection.py" in c), (domain, strategy, k)
        assert f"--config-name=base mode=best_of_n domain={domain} name={domain}_0k_best_of_n" in script
    assert "--config-name=cross domain=code source=math name=math_to_code_20k" in script
    assert "dataset.max_examples=20000" in script
    assert commands[-1] == f"python report.py {tmp_path}"
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["sizes"] == [20000, 40000, 60000] and grid["al"]["pairs_per_round"] == 2500
    # The cost the user sees before renting: every step priced (SFT and the third domain too), written beside it.
    assert "# estimated cost on h200" in result.stdout and "GPU-hours rented" in result.stdout
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert len(cost["steps"]) == len(commands) and cost["by_kind"]["sft"]["gpu_hours"] > 0


def test_only_and_skip_select_steps_by_name_or_group() -> None:
    steps = [Step("generate/math", "generate", "g"), Step("train/math_20k", "finetune", "t"),
             Step("eval/math_20k", "eval", "e")]
    assert [s.name for s in select_steps(steps, ["generate", "eval/*"], [])] == ["generate/math", "eval/math_20k"]
    assert [s.name for s in select_steps(steps, [], "finetune")] == ["generate/math", "eval/math_20k"]
    with pytest.raises(UserError, match="'evl' matches no step or group"):
        select_steps(steps, ["evl"], [])


def test_rerun_skips_finished_steps_and_redoes_changed_ones(tmp_path: Path, tiny_models) -> None:
    run = tmp_path / "run"
    threads = torch.get_num_threads()
    first = _statuses(reproduce(_config(run, tiny_models, *CHEAP)))
    assert torch.get_num_threads() == threads  # the tiny profile's single thread does not outlive the run
    assert first == {"setup/tiny_models": "done", "generate/math": "done", "eval/math_0k": "done"}
    assert json.loads((layout.eval_dir(run, "math_0k") / "results.json").read_text())["num_pairs"] > 0
    log = (run / "logs" / "eval__math_0k.log").read_text()
    assert log.startswith("$ python eval.py --config-name=base domain=math name=math_0k")
    assert "accuracy" in log  # the stage's own summary, captured in-process

    assert set(_statuses(reproduce(_config(run, tiny_models, *CHEAP))).values()) == {"skipped"}
    results = layout.eval_dir(run, "math_0k") / "results.json"
    kept = results.stat().st_mtime_ns

    # How a step is launched is not what it produces: a new launcher keeps every finished output.
    launcher = "profile.launcher='accelerate launch --config_file=deepspeed/2_2GPU.yaml'"
    assert set(_statuses(reproduce(_config(run, tiny_models, *CHEAP, launcher))).values()) == {"skipped"}
    assert results.stat().st_mtime_ns == kept

    # A changed setting reaches the stage, which refuses to replace its finished result in one line...
    with pytest.raises(UserError, match=r"dataset\.max_examples: None → 5.*overwrite=true"):
        reproduce(_config(run, tiny_models, *CHEAP, "profile.sizes.eval_max_examples=5"))
    assert results.stat().st_mtime_ns == kept
    # ... and replaces it when asked.
    changed = _statuses(reproduce(_config(run, tiny_models, *CHEAP, "profile.sizes.eval_max_examples=5",
                                          "overwrite=true")))
    assert changed == {"setup/tiny_models": "skipped", "generate/math": "skipped", "eval/math_0k": "done"}
    assert json.loads(results.read_text())["num_pairs"] == 5

    # A file merely touched is not a changed input...
    data = layout.data_dir(run, "math") / "dataset_dict.json"
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))
    touched = _statuses(reproduce(_config(run, tiny_models, *CHEAP, "profile.sizes.eval_max_examples=5")))
    assert set(touched.values()) == {"skipped"}
    # ... an input redone with other settings (here: generation rerun by hand) makes its readers stale: redone.
    generate_by_hand = compose_configs([Step("g", "", "generate_preference_data", "demo_math", [
        f"output_dir={layout.data_dir(run, 'math')}", "seed=7", "overwrite=true", "progress=false"])])[0]
    from reward_transfer.generation import generate_preference_data

    generate_preference_data(generate_by_hand)
    again = _statuses(reproduce(_config(run, tiny_models, *CHEAP, "profile.sizes.eval_max_examples=5",
                                        "only=[setup,eval/math_0k]")))
    assert again == {"setup/tiny_models": "skipped", "eval/math_0k": "done"}
    assert (run / "logs" / "eval__math_0k.log").read_text().splitlines()[0].endswith(" overwrite=true")


def test_a_failing_step_stops_the_run_with_its_command_and_log_tail(tmp_path: Path, tiny_models) -> None:
    run = tmp_path / "run"
    with pytest.raises(UserError) as failure:
        reproduce(_config(run, tiny_models, *CHEAP, f"profile.models.general={tmp_path / 'no_such_model'}"))
    message = str(failure.value)
    assert message.startswith("step eval/math_0k failed")
    assert ("command: python eval.py --config-name=base domain=math name=math_0k "
            f"model.model_name_or_path={tmp_path}") in message
    assert "no_such_model" in message.split("last lines of the log:")[1]
    assert not (run / ".steps" / "eval__math_0k.done").exists()
    assert (run / ".steps" / "generate__math.done").exists()


def test_a_step_whose_input_never_ran_is_refused(tmp_path: Path, tiny_models) -> None:
    with pytest.raises(UserError, match="step eval/math_scratch needs train/math_scratch"):
        reproduce(_config(tmp_path / "run", tiny_models, "only=[setup,generate,eval/math_scratch]"))


def test_dry_run_writes_the_tiny_command_list_without_running(tmp_path: Path, tiny_models) -> None:
    run = tmp_path / "run"
    assert reproduce(_config(run, tiny_models, "dry_run=true")) == []
    script = (run / "commands.sh").read_text()
    assert "python train_reward_model.py --config-name=truth domain=math name=math_scratch" in script
    assert "profile=tiny" in script and not (run / ".steps").exists()


@pytest.mark.parametrize("profile", ["tiny", "paper", "preflight"])
def test_every_step_composes_with_its_script_schema(tmp_path: Path, profile: str) -> None:
    """Each step's named config + overrides is valid for its script (unknown keys would be schema errors)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        cfg = compose("config", overrides=[f"profile={profile}", f"output_dir={tmp_path}"])
    steps = build_grid(cfg)
    hydra_steps = [s for s in steps if s.config_name is not None]
    assert len(hydra_steps) > (10 if profile == "preflight" else 80)
    # Steps that differ only in the values of the same keys compose alike: one of each shape is composed.
    shapes = {(s.script, s.config_name, tuple(sorted(o.split("=", 1)[0] for o in s.overrides))): s
              for s in hydra_steps}
    hydra_steps = list(shapes.values())
    best_of_n = None
    for step, composed in zip(hydra_steps, compose_configs(hydra_steps), strict=True):  # one Hydra init per script
        written = (composed.dataset.output_dataset_name_or_path if step.script == "active_data_selection"
                   else composed.output_dir)
        assert Path(step.outputs[0]).parent == Path(written), step.name
        best_of_n = composed if step.group == "best_of_n" else best_of_n
    from reward_transfer.evaluation import candidates_path

    assert best_of_n.mode == "best_of_n" and candidates_path(best_of_n).endswith("candidates")


def test_an_in_process_step_gives_what_its_command_line_gives(tmp_path: Path, tiny_models) -> None:
    run = tmp_path / "run"
    reproduce(_config(run, tiny_models, *CHEAP))
    line = next(c for c in (run / "commands_selected.sh").read_text().splitlines() if " name=math_0k " in c)
    command = f"{line} output_dir={tmp_path / 'cli'}"  # the same command, its result elsewhere
    result = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    in_process = json.loads((layout.eval_dir(run, "math_0k") / "results.json").read_text())
    by_command = json.loads((tmp_path / "cli" / "results.json").read_text())
    for key in ("accuracy", "num_pairs", "ties", "mean_margin"):
        assert in_process[key] == pytest.approx(by_command[key], abs=1e-6), key


def _dry_run(tmp_path: Path, *overrides: str) -> str:
    result = subprocess.run([sys.executable, "reproduce.py", "dry_run=true", f"output_dir={tmp_path}", *overrides],
                            cwd=REPO, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    return (tmp_path / "commands.sh").read_text()


def test_paper_dry_run_shows_the_data_files_the_pool_and_the_training_order(tmp_path: Path) -> None:
    script = _dry_run(tmp_path, "profile=paper")
    assert ("# problems of code: hf://datasets/codeparrot/apps/train.jsonl (train), "
            "hf://datasets/codeparrot/apps/test.jsonl (train); 9000 eval pairs") in script
    assert "# problems of math: AI-MO/NuminaMath-CoT (train); 9000 eval pairs" in script
    assert "# training order: 32 of 32 training steps shuffled, 0 length-grouped" in script
    assert "# active-learning pool (round 1): the ground truth's 60000 training pairs" in script
    selects = [line for line in script.splitlines() if "active_data_selection.py" in line]
    assert all(("dataset.pool_size=60000" in line) == ("--config-name=initial " in line) for line in selects)
    assert sum("--config-name=initial " in line for line in selects) == 4  # round 1 of 2 domains × 2 strategies


def test_the_paper_dry_run_lists_and_prices_every_strategy_seed_benchmark_and_baseline(tmp_path: Path) -> None:
    strategies = ["margin", "random", "fisher", "diversity", "large_gap"]
    script = _dry_run(tmp_path, "profile=paper", "profile.domains=[math]", "profile.active_learning.seeds=[1,2]",
                      f"profile.active_learning.strategies=[{','.join(strategies)}]",
                      "profile.benchmarks=[rewardbench2]")
    selects = [line for line in script.splitlines() if "active_data_selection.py" in line]
    assert len(selects) == len(strategies) * 2 * 3  # × seeds × rounds
    for strategy in strategies:
        for seed in (1, 2):
            assert any(f"selection.strategy={strategy} " in line and f" seed={seed} " in f"{line} " for line in selects)
    assert "interpolate_reward_model.py" in script and "mode=rewardbench2" in script
    assert "{name_or_path:allenai/reward-bench-2,split:test}" in script  # a bare name: its published dataset
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert {"active_learning", "baselines", "benchmarks"} <= set(cost["by_kind"])
    assert all(cost["by_kind"][kind]["gpu_hours"] > 0 for kind in ("active_learning", "baselines", "benchmarks"))


def test_published_pairs_stand_in_for_the_generate_step(tmp_path: Path) -> None:
    script = _dry_run(tmp_path, "profile=paper_published")
    commands = [line for line in script.splitlines() if line and not line.startswith(("#", "set "))]
    assert not any("generate_preference_data.py" in c or "mode=best_of_n" in c for c in commands)
    assert any("name=math_scratch" in c and "{name_or_path:eth-dl-rewards/pref-data-math,split:train}" in c
               for c in commands)
    assert any("eval.py" in c and "{name_or_path:eth-dl-rewards/pref-data-code,split:eval}" in c for c in commands)
    assert "# pairs of math: eth-dl-rewards/pref-data-math (given; not generated, no best-of-n)" in script
    # A real run checks its inputs: nothing needs a generate step, so a plain start is not refused.
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        cfg = compose("config", overrides=["profile=paper_published", f"output_dir={tmp_path}"])
    assert not any(need.startswith("generate/") for step in build_grid(cfg) for need in step.needs)


def test_an_interrupt_stops_the_run_with_exit_130_and_keeps_finished_steps(tmp_path: Path, tiny_models,
                                                                           monkeypatch) -> None:
    import reward_transfer.grid.running as running

    real = running.run_in_process

    def interrupted_generation(step):
        if step.name == "generate/math":
            raise KeyboardInterrupt
        return real(step)

    monkeypatch.setattr(running, "run_in_process", interrupted_generation)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        reproduce(_config(run, tiny_models, *CHEAP))
    assert stopped.value.code == 130
    assert (run / ".steps" / "setup__tiny_models.done").exists()
    assert not (run / ".steps" / "generate__math.done").exists()
    monkeypatch.setattr(running, "run_in_process", real)
    assert _statuses(reproduce(_config(run, tiny_models, *CHEAP)))["setup/tiny_models"] == "skipped"


def test_a_deleted_intermediate_merged_model_is_merged_again_and_nothing_downstream_is_redone(tmp_path, tiny_models):
    """auto_gpu.md says the `active_learning_*_r<k>-merged` folders can be deleted to save disk: a later plain rerun
    merges r1 again (the same content) and redoes nothing that read it."""
    import shutil

    run = tmp_path / "run"
    chain = ["only=[setup,generate,active_learning]", "profile.active_learning.rounds=2",
             "profile.active_learning.strategies=[margin]", "profile.active_learning.random_subsets=false"]
    reproduce(_config(run, tiny_models, *chain))
    merged = layout.merged_dir(run, layout.active_learning_name("math", "margin", 1))
    shutil.rmtree(merged)
    statuses = _statuses(reproduce(_config(run, tiny_models, *chain)))
    assert statuses.pop("merge/active_learning_math_margin_r1") == "done" and (merged / "config.json").is_file()
    assert set(statuses.values()) == {"skipped"}, statuses


def test_the_preflight_runs_every_kind_of_step_of_the_paper_run_once_on_a_few_dozen_pairs(tmp_path: Path) -> None:
    """`make gpu-check REAL=1`: the paper's models, launcher and configs, every kind of step, small."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        preflight = compose("config", overrides=["profile=preflight", f"output_dir={tmp_path}"])
        paper = compose("config", overrides=["profile=paper", f"output_dir={tmp_path}"])
    steps = build_grid(preflight)
    kinds = {(s.script, "best_of_n" if "mode=best_of_n" in s.overrides else s.group) for s in steps}
    for kind in [("generate_preference_data", "generate"), ("train_sft_model", "sft"),
                 ("train_reward_model", "truth"), ("train_reward_model", "active_learning"),
                 ("merge_peft_model", "truth"), ("eval", "eval"), ("active_data_selection", "active_learning"),
                 ("eval", "best_of_n"), ("interpolate_reward_model", "baselines"), ("report", "report")]:
        assert kind in kinds, kind
    assert len(steps) <= 16
    assert preflight.profile.launcher == paper.profile.launcher  # DeepSpeed through accelerate, as the grid runs
    assert preflight.profile.models == paper.profile.models
    composed = dict(zip([s.name for s in steps if s.config_name],
                        compose_configs([s for s in steps if s.config_name]), strict=True))
    assert composed["train/math_scratch"].dataset.max_examples == 48
    assert composed["eval/math_0k"].dataset.max_examples == 32
    assert composed["select/active_learning_math_margin_r1"].dataset.pairs_to_select == 16


def test_active_learning_seeds_repeat_each_strategy_chain_with_its_own_seed(tmp_path: Path, tiny_models) -> None:
    steps = {s.name: s for s in build_grid(_config(tmp_path, tiny_models, "profile.active_learning.seeds=[3,4]",
                                                   "profile.active_learning.strategies=[margin,random]"))}
    for strategy in ("margin", "random"):
        for seed in (3, 4):
            for k in (1, 2, 3):
                name = layout.active_learning_name("math", strategy, k, seed)
                select = steps[f"select/{name}"]
                assert f"seed={seed}" in select.overrides and f"seed={seed}" in steps[f"train/{name}"].overrides
                state = layout.al_state_dir(tmp_path, "math", strategy, k, seed)
                assert f"dataset.output_dataset_name_or_path={state}" in select.overrides
                assert f"eval/{name}" in steps
    assert not any(name.startswith("select/") and "_s" not in name.split("math_")[1] for name in steps)
    # best-of-n reranks with the first seed's last round only: the seeds' spread is Table 2's
    assert f"best_of_n/{layout.active_learning_name('math', 'margin', 3, 3)}" in steps
    assert f"best_of_n/{layout.active_learning_name('math', 'margin', 3, 4)}" not in steps
    with pytest.raises(UserError, match=r"profile\.active_learning\.seeds"):
        build_grid(_config(tmp_path, tiny_models, "profile.active_learning.seeds=[3,3]"))


@pytest.mark.parametrize(("override", "message"), [
    ("profile.active_learning.strategies=[margin,fishr]", "unknown strategy 'fishr'; known: margin, argmin, random"),
    ("profile.baselines=[merge_sf]", "unknown baseline 'merge_sf'; known: merge_sft"),
    ("profile.benchmarks=[rewardbench3]", "unknown benchmark 'rewardbench3'; known: rewardbench, rewardbench2"),
    ("profile.benchmarks=[rewardbench2,rewardbench2]", "'rewardbench2' is given twice"),
    ("profile.benchmarks=[{name_or_path: x}]", r"must be a name \(rewardbench, rewardbench2, best_of_k\) or"),
])
def test_a_misspelt_name_is_refused_when_planning_not_hours_into_the_grid(tmp_path: Path, tiny_models, override,
                                                                          message) -> None:
    with pytest.raises(UserError, match=message):
        build_grid(_config(tmp_path, tiny_models, override))


def test_a_seeded_round_runs_and_the_report_pools_its_chains(tmp_path: Path, tiny_models) -> None:
    run = tmp_path / "run"
    round1 = "active_learning_math_margin_s*_r1"
    cfg = _config(run, tiny_models, "profile.active_learning.seeds=[1,2]", "profile.active_learning.strategies=[margin]",
                  f"only=[setup,generate,'select/{round1}','train/{round1}','eval/{round1}',report]", "best_of_n=false",
                  "profile.sizes.full=40", "profile.sizes.subsets=[40]")  # a pool sampled from the train split
    assert set(_statuses(reproduce(cfg)).values()) == {"done"}
    states = [layout.al_state_dir(run, "math", "margin", 1, seed) for seed in (1, 2)]
    picks = [json.loads((state / "al_state.json").read_text())["rounds"][0]["pair_ids"] for state in states]
    assert sorted(picks[0]) != sorted(picks[1])  # each chain's selection is seeded with its own seed
    pools = [sorted(pair for split in ("selected", "rest") for pair in datasets.load_from_disk(str(state))[split]["pair_id"])
             for state in states]
    assert len(pools[0]) == 40 and pools[0] == pools[1]  # ...from R_truth's training sample, the same for every seed
    assert "AL margin (2 seeds)" in (run / "tables.md").read_text()


def test_each_benchmark_runs_with_every_final_model_and_the_report_tables_it(tmp_path: Path, tiny_models) -> None:
    cfg = _config(tmp_path, tiny_models, "profile.active_learning.strategies=[margin]")
    steps = {s.name for s in build_grid(cfg)}
    for benchmark in ("rewardbench", "rewardbench2", "best_of_k"):
        for model in ("general", "math_scratch", layout.active_learning_name("math", "margin", 3),
                      layout.merge_sft_name("math")):
            assert f"benchmark/{layout.benchmark_name(model, benchmark)}" in steps, (model, benchmark)
    assert _statuses(reproduce(_config(tmp_path, tiny_models, "only=[setup,'benchmark/general_*',report]")))
    tables = (tmp_path / "tables.md").read_text()
    overall = tables.split("## The field's reward-model benchmarks")[1].split("## ")[0]
    assert next(line for line in overall.splitlines() if line.startswith("| R_gen")).count("–") == 3
    general = next(line for line in tables.split("## The field's benchmarks per section and subset")[1].splitlines()
                   if line.startswith("| R_gen"))
    # The samples' 4 v1 sections, 6 v2 subsets (Ties too), 2 best-of-K subsets: each with its interval.
    assert general.count("–") == 4 + 6 + 2
