"""The grid's executors on real engines: the same results under inprocess, subprocess, local, Ray (a local Ray started
here) and Slurm (the single-node cluster of conftest), failures that stop only what depends on them, resumable
submission, one reproduce.py per run folder, Ctrl-C, and the dry run's schedule."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from reward_transfer import run_layout as layout
from reward_transfer.errors import UserError
from reward_transfer.grid.executors.local import GpuSlots
from reward_transfer.grid.reproduce import reproduce
from reward_transfer.grid.script import critical_path, makespan
from reward_transfer.grid.step import Step

REPO = Path(__file__).resolve().parent.parent
SMALL = ["profile.domains=[math]", "profile.sizes.full=40", "profile.sizes.subsets=[40]",
         "profile.active_learning.rounds=1", "profile.active_learning.strategies=[margin]",
         "profile.active_learning.random_subsets=false"]
# One step of every kind: tiny models, generation, SFT, selection, training, evaluation, merging, best-of-n, the
# DogeRM baseline, a benchmark, report.
EVERY_KIND = ("only=[setup,generate,sft,select/*,train/active_learning*,eval/active_learning*,"
              "merge/active_learning*,best_of_n/math_0k,baseline/*,benchmark/general_rewardbench2,report]")
ROUND = layout.active_learning_name("math", "margin", 1)


def _config(run: Path, tiny_models, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs" / "reproduce"), version_base="1.3"):
        return compose("config", overrides=[
            f"output_dir={run}", f"profile.tiny_models={tiny_models['lm'].parent}",
            f"profile.models.general={tiny_models['rm']}", f"profile.models.sft.math={tiny_models['lm']}",
            f"profile.sft.base.math={tiny_models['lm']}", *SMALL, *overrides])


def results(run: Path) -> dict:
    """What the run found: the round's accuracy and margin, its picks, best-of-n, the SFT model's held-out loss."""
    evaluation = json.loads((layout.eval_dir(run, ROUND) / "results.json").read_text())
    best = json.loads((layout.eval_dir(run, "math_0k_best_of_n") / "results.json").read_text())
    state = json.loads((layout.al_state_dir(run, "math", "margin", 1) / "al_state.json").read_text())
    sft = json.loads((layout.model_dir(run, "sft_math") / "training_summary.json").read_text())
    benchmark = json.loads((layout.eval_dir(run, "general_rewardbench2") / "results.json").read_text())
    baseline = hashlib.sha256((layout.model_dir(run, "math_merge_sft") / "model.safetensors").read_bytes())
    return {"accuracy": evaluation["accuracy"], "margin": round(evaluation["mean_margin"], 6),
            "picks": state["rounds"][0]["pair_ids"], "best_of_n": best["accuracy"],
            "sft_loss": sft["held_out_loss_after"], "benchmark": benchmark["score"],
            "baseline_weights": baseline.hexdigest()}


@pytest.fixture(scope="module")
def reference(tiny_models, tmp_path_factory) -> dict:
    """The results of the in-process executor (the tiny default)."""
    run = tmp_path_factory.mktemp("inprocess") / "run"
    reproduce(_config(run, tiny_models, EVERY_KIND))
    return results(run)


def _run_with(run: Path, tiny_models, *overrides: str) -> dict:
    outcomes = reproduce(_config(run, tiny_models, EVERY_KIND, *overrides))
    assert {o.status for o in outcomes} == {"done"}, [(o.step, o.status, o.error[-300:]) for o in outcomes]
    return results(run)


def test_local_executor_runs_steps_side_by_side_with_the_same_results(tiny_models, reference, tmp_path):
    """Every kind of step as its command line, two at a time as their inputs allow (once generated, the data is
    read by SFT, a selection, best-of-n and the benchmark side by side): the in-process results."""
    run = tmp_path / "run"
    assert _run_with(run, tiny_models, "executor=local", "executor.max_parallel=2") == reference
    lines = (run / "last_run.json").read_text()
    assert '"where": ""' in lines  # no GPUs given: every step on the CPU slots


def test_ray_executor_gives_the_same_results_on_a_local_ray(tiny_models, reference, tmp_path):
    assert _run_with(tmp_path / "run", tiny_models, "executor=ray", "executor.num_cpus=2") == reference


def test_ray_gives_gpu_steps_the_gpus_named_in_executor_gpus(tiny_models, tmp_path):
    """GPUs declared to a local Ray on a CPU machine: the scheduling runs for real; a GPU step gets GPU 5 (the one
    named), not Ray's own numbering from 0, and runs as its command line; a CPU step asks for no GPU."""
    outcomes = reproduce(_config(tmp_path / "run", tiny_models, "only=[setup,generate]", "executor=ray",
                                 "executor.num_cpus=2", "executor.gpus=[5]"))
    where = {outcome.step: outcome.where for outcome in outcomes}
    assert where["generate/math"].endswith("GPU ['5']") and "GPU" not in where["setup/tiny_models"]


def test_slurm_executor_gives_the_same_results_and_follows_instead_of_resubmitting(slurm_cluster, tiny_models,
                                                                                  reference, tmp_path):
    run, slurm = tmp_path / "run", ["executor=slurm", "executor.gpus_per_step=0", "executor.cpus_per_step=1",
                                    "executor.poll_s=0.5"]
    # Submitted and left (as if reproduce.py were killed after submitting): the jobs go on in Slurm.
    assert reproduce(_config(run, tiny_models, EVERY_KIND, *slurm, "executor.wait=false")) == []
    submitted = json.loads((run / ".grid" / "slurm_jobs.json").read_text())
    assert len(submitted) == 11
    # Another executor refuses while they run, naming them.
    with pytest.raises(UserError, match=r"Slurm jobs still queued or running \("):
        reproduce(_config(run, tiny_models, EVERY_KIND, "executor=local"))
    # The same command again follows the queued jobs (no second submission) to the end.
    assert _run_with(run, tiny_models, *slurm) == reference
    assert json.loads((run / ".grid" / "slurm_jobs.json").read_text()) == submitted
    # Once finished, nothing is resubmitted: every step is skipped.
    again = {o.step: o.status for o in reproduce(_config(run, tiny_models, EVERY_KIND, *slurm))}
    assert again.pop("report") == "done" and set(again.values()) == {"skipped"}  # the report is always redone
    assert json.loads((run / ".grid" / "slurm_jobs.json").read_text())["report"] != submitted["report"]


def test_subprocess_executor_runs_each_step_as_its_command_line(tiny_models, tmp_path):
    cheap = "only=[setup,generate,best_of_n/math_0k]"
    inprocess = reproduce(_config(tmp_path / "a", tiny_models, cheap))
    by_command = reproduce(_config(tmp_path / "b", tiny_models, cheap, "executor=subprocess"))
    assert [o.status for o in inprocess] == [o.status for o in by_command] == ["done"] * 3
    read = [json.loads((layout.eval_dir(run, "math_0k_best_of_n") / "results.json").read_text())["accuracy"]
            for run in (tmp_path / "a", tmp_path / "b")]
    assert read[0] == read[1]
    assert (tmp_path / "b" / "logs" / "generate__math.log").read_text().startswith(
        "$ python generate_preference_data.py --config-name=demo_math")


def test_a_failed_step_stops_only_what_needs_it(tiny_models, tmp_path):
    run = tmp_path / "run"
    failing = "profile.overrides.active_learning=['train.learning_rate=-1']"
    with pytest.raises(UserError) as failure:
        reproduce(_config(run, tiny_models, "only=[setup,generate,select/*,train/active_learning*,"
                                            "eval/active_learning*,merge/active_learning*,best_of_n/math_0k]",
                          failing, "executor=local", "executor.max_parallel=2"))
    message = str(failure.value)
    assert message.startswith(f"step train/{ROUND} failed") and "train.learning_rate: must be positive" in message
    assert f"1 failed, 2 not run because of them (eval/{ROUND}, merge/{ROUND}), 4 finished" in message
    assert (layout.eval_dir(run, "math_0k_best_of_n") / "results.json").is_file()  # independent: finished
    assert not (layout.eval_dir(run, ROUND) / "results.json").exists()


def _start(run: Path, tiny_models, *overrides: str) -> subprocess.Popen:
    """reproduce.py in a process of its own, its generation slowed so that it is running when we act."""
    args = [f"output_dir={run}", f"profile.tiny_models={tiny_models['lm'].parent}",
            f"profile.models.general={tiny_models['rm']}", *SMALL, "only=[setup,generate]",
            "profile.overrides.generate=['generation.replay_delay_s=0.3']", *overrides]
    return subprocess.Popen([sys.executable, "reproduce.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("stop", ["ctrl-c", "kill"])
def test_a_second_reproduce_on_the_same_folder_refuses_naming_the_first_and_stopping_it_exits_130(tiny_models,
                                                                                                tmp_path, stop):
    """The second run (another plan, a dry run) refuses before writing anything; the first, stopped by Ctrl-C in
    its terminal (SIGINT to the whole group) or by `kill <pid>` (SIGTERM to it alone), takes its steps with it."""
    run = tmp_path / "run"
    first = _start(run, tiny_models, "executor=local")
    try:
        _wait_for(run / "logs" / "generate__math.log", first)
        written = {path: path.read_bytes() for path in (run / "commands.sh", run / "commands_selected.sh",
                                                         layout.grid_file(run), run / "reproduce_config.yaml")}
        second = subprocess.run([sys.executable, "reproduce.py", f"output_dir={run}", *SMALL, "only=[setup]",
                                 "profile.sizes.eval_max_examples=5", "dry_run=true",
                                 f"profile.tiny_models={tiny_models['lm'].parent}"], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert second.stderr.startswith(f"error: {run} is being run by another reproduce.py (host ")
        assert f"pid {first.pid}, executor local" in second.stderr
        assert {path: path.read_bytes() for path in written} == written
        if stop == "ctrl-c":
            os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        else:
            first.send_signal(signal.SIGTERM)  # `kill <pid>`: the step's own process is not signalled
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130 and "interrupted: generate/math; rerun the same command" in err
    assert not (run / ".steps" / "generate__math.done").exists()
    leftovers = subprocess.run(["pgrep", "-f", f"output_dir={layout.data_dir(run, 'math')}"], capture_output=True)
    assert leftovers.stdout == b""  # the step's own process went with it
    done = subprocess.run([sys.executable, "reproduce.py", f"output_dir={run}", *SMALL, "only=[setup,generate]",
                           f"profile.tiny_models={tiny_models['lm'].parent}", "executor=local"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "setup/tiny_models  skipped (done)" in done.stderr and "generate/math" in done.stderr


def test_the_dry_run_gives_the_critical_path_and_the_planned_schedule(tmp_path):
    result = subprocess.run([sys.executable, "reproduce.py", "dry_run=true", f"output_dir={tmp_path}", "executor=local",
                             "executor.max_parallel=4"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    path_line = next(line for line in lines if line.startswith("# critical path: "))
    schedule = next(line for line in lines if line.startswith("# planned schedule under executor=local: "))
    length = int(path_line.split()[3])
    span = int(schedule.split(": ")[1].split()[0])
    steps = int(next(line for line in lines if line.endswith("commands.sh") and " of " in line).split()[1])
    assert length <= span < steps / 3  # 4 at once: far shorter than one after another, never below the path


def test_schedule_arithmetic_on_a_small_graph():
    steps = [Step("a", "g", "generate_preference_data"), Step("b", "g", "train_reward_model", needs=["a"]),
             Step("c", "g", "train_reward_model", needs=["a"]), Step("m", "g", "merge_peft_model", needs=["b"]),
             Step("d", "g", "eval", needs=["b", "c"])]
    assert critical_path(steps) == (3.0, ["a", "b", "m"])
    assert makespan(steps, None, 1) == 5  # one slot: one after another
    assert makespan(steps, None, 2) == 3  # b and c side by side, then m and d
    assert makespan(steps, 1, 4) == 4  # GPU steps one at a time, the merge beside them
    slots = GpuSlots([0, 1], per_gpu=2)
    taken = [slots.take() for _ in range(5)]
    assert sorted(taken[:4]) == [0, 0, 1, 1] and taken[4] is None  # two per GPU, the least loaded first
