"""Kill anywhere, leave nothing: a stage killed between publishing its output and removing its work folder leaves
nothing behind once the same command runs again, and a resumed training's figures cover the whole run.

A kill at an exact moment is simulated by making the call that follows that moment raise KeyboardInterrupt (what a
Ctrl-C there would do); the subprocess test at the end kills the real `reproduce.py` with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sft import compose_config as compose_stage
from test_sft import math_pairs, sft_overrides  # noqa: F401  (fixture)
from training_helpers import OFFLINE_ENV, compose_config, interrupt_at_step, tiny_run, write_pairs

from reward_transfer import training
from reward_transfer.generation import generate_preference_data
from reward_transfer.generation import store as generation_store
from reward_transfer.sft import train_sft_model
from reward_transfer.training import train_reward_model
from reward_transfer.training_runs import checkpoint_dir

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("single_cpu_thread")


def kill_when_removing(monkeypatch, module, is_target):
    """Make `shutil.rmtree(path)` (as `module` calls it) raise KeyboardInterrupt for the first path `is_target`
    accepts: the moment after the output is published, before the work folder is gone."""
    real = module.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if is_target(Path(path)):
            monkeypatch.setattr(module.shutil, "rmtree", real)
            raise KeyboardInterrupt("killed here")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module.shutil, "rmtree", rmtree)


def test_a_training_killed_after_publishing_leaves_no_checkpoints_after_the_rerun(tiny_models, tmp_path, monkeypatch,
                                                                                 capsys):
    out = tmp_path / "models" / "run"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], write_pairs(tmp_path / "pairs", 12), out,
                                               "train.save_steps=1", "train.max_steps=2"))
    kill_when_removing(monkeypatch, training, lambda path: path == checkpoint_dir(out)
                       and (out / "log_history.json").is_file())
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(cfg)
    assert (out / "log_history.json").is_file() and checkpoint_dir(out).is_dir()  # the window the kill hit
    capsys.readouterr()
    train_reward_model(cfg)
    assert "already complete" in capsys.readouterr().out
    assert not checkpoint_dir(out).exists()


def test_an_sft_run_killed_after_publishing_leaves_no_checkpoints_after_the_rerun(tiny_models, math_pairs, tmp_path,  # noqa: F811
                                                                                  monkeypatch):
    from reward_transfer import sft

    out = tmp_path / "sft"
    cfg = compose_stage("train_sft_model", "demo_math", sft_overrides(tiny_models, math_pairs, out, "train.max_steps=2"))
    kill_when_removing(monkeypatch, sft, lambda path: path == checkpoint_dir(out) and (out / "config.json").is_file())
    with pytest.raises(KeyboardInterrupt):
        train_sft_model(cfg)
    assert checkpoint_dir(out).is_dir()
    train_sft_model(cfg)
    assert not checkpoint_dir(out).exists() and (out / "config.json").is_file()


def test_a_generation_killed_after_publishing_leaves_no_work_folder_after_the_rerun(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs" / "generate_preference_data"), version_base="1.3"):
        cfg = compose("demo_math", [f"output_dir={tmp_path / 'data'}", "progress=false"])
    manifest = tmp_path / "data" / generation_store.MANIFEST
    kill_when_removing(monkeypatch, generation_store, lambda path: path.name == ".work"
                       and '"complete": true' in manifest.read_text())
    with pytest.raises(KeyboardInterrupt):
        generate_preference_data(cfg)
    assert (tmp_path / "data" / ".work").is_dir()
    generate_preference_data(cfg)
    assert not (tmp_path / "data" / ".work").exists()


def test_a_resumed_training_counts_the_whole_run(tiny_models, tmp_path, monkeypatch, capsys):
    """Tokens, num_tokens and the final train_loss of a run killed after its step-2 checkpoint and resumed equal
    those of the same run uninterrupted; the summary says it was resumed and from where."""
    from trl import RewardTrainer

    data = write_pairs(tmp_path / "pairs", 24)
    # A log every 3 steps: neither the checkpoint (step 2) nor the end (step 5) falls on one.
    settings = ("train.save_steps=2", "train.max_steps=5", "train.logging_steps=3", "train.disable_dropout=true")
    whole = train_reward_model(compose_config("demo_math", tiny_run(tiny_models["rm"], data, tmp_path / "whole",
                                                                     *settings)))
    out = tmp_path / "resumed"
    cfg = compose_config("demo_math", tiny_run(tiny_models["rm"], data, out, *settings, "train.resume=true"))
    interrupt_at_step(monkeypatch, RewardTrainer, 3, lambda: train_reward_model(cfg))
    resumed = train_reward_model(cfg)
    assert resumed["resumed_from_step"] == 2 and whole["resumed_from_step"] is None
    assert resumed["tokens"] == whole["tokens"] and resumed["padded_tokens"] == whole["padded_tokens"]
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], abs=1e-4)
    logs = [json.loads((path / "log_history.json").read_text()) for path in (tmp_path / "whole", out)]
    final = [next(e for e in reversed(log) if "train_loss" in e) for log in logs]
    assert final[1]["train_loss"] == pytest.approx(final[0]["train_loss"], abs=1e-4)
    assert whole["train_loss"] == pytest.approx(final[0]["train_loss"], abs=1e-4)  # the Trainer's own, every step
    assert "train_loss_since_resume" in final[1]
    num_tokens = [[e["num_tokens"] for e in log if "num_tokens" in e] for log in logs]
    assert num_tokens[1][-1] == num_tokens[0][-1]


def _paths(run: Path) -> set[str]:
    return {str(path.relative_to(run)) for path in run.rglob("*")}


def _run_to_the_end(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO, env=OFFLINE_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_killing_reproduce_anywhere_then_rerunning_leaves_what_a_clean_run_leaves(tiny_models, tmp_path):
    """SIGKILL `reproduce.py` (tiny, the math truth chain) when a generation shard, then a training checkpoint,
    first appears; the same command then finishes, and the run folder holds the paths a clean run holds."""
    command = [sys.executable, "reproduce.py", "profile.domains=[math]", "only=[setup,generate,sft,truth]",
               f"profile.tiny_models={tiny_models['lm'].parent}", "best_of_n=false"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _run_to_the_end([*command, f"output_dir={clean}"])
    for moment in ("data/pref-data-math/.work/shards/shard-000000.done.json", "models/.math_scratch.checkpoints"):
        process = subprocess.Popen([*command, f"output_dir={killed}"], cwd=REPO, env=OFFLINE_ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (killed / moment).exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, f"the run ended before {moment} appeared"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _run_to_the_end([*command, f"output_dir={killed}"])
    assert _paths(killed) - _paths(clean) == set()


# Run a stage's script, SIGKILLing itself at one moment of an atomic write: `publishing` (the new folder is complete
# in its temporary, not yet renamed into place) or `removing-old` (renamed into place, the replaced copy not yet gone).
KILL_AT = """
import os, runpy, signal, sys
from reward_transfer import storage
moment, script, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]
if moment == "publishing":
    storage.replace_dir = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
else:
    real_rmtree = storage.shutil.rmtree
    storage.shutil.rmtree = lambda path, *a, **k: (os.kill(os.getpid(), signal.SIGKILL) if ".old-" in str(path)
                                                   else real_rmtree(path, *a, **k))
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize(("moment", "killed_args", "rerun_args"), [
    ("publishing", [], []),  # a first merge killed while its temporary holds the whole model
    ("removing-old", ["--overwrite"], []),  # a replacing merge killed after publishing; the rerun finds it complete
])
def test_a_merge_killed_mid_write_leaves_nothing_beside_its_output_after_the_rerun(tiny_models, tmp_path, moment,
                                                                                   killed_args, rerun_args):
    adapter = tmp_path / "run"
    train_reward_model(compose_config("demo_math", tiny_run(tiny_models["rm"], write_pairs(tmp_path / "pairs", 8),
                                                            adapter, "train.max_steps=1")))
    merge = ["merge_peft_model.py", f"--model_name={adapter}", f"--output_dir={tmp_path / 'merged'}"]
    if moment == "removing-old":
        _run_to_the_end([sys.executable, *merge])
    killed = subprocess.run([sys.executable, "-c", KILL_AT, moment, *merge, *killed_args], cwd=REPO, env=OFFLINE_ENV,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert any(path.name.startswith(".merged.") for path in tmp_path.iterdir())  # the debris the kill left
    _run_to_the_end([sys.executable, *merge, *rerun_args])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["merged", "pairs", "run"]
    assert (tmp_path / "merged" / "config.json").is_file()
