"""Every entry point reads `.env` (HF_TOKEN, WANDB_API_KEY as the seed README asks) and turns expected
failures into one line with exit code 1."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from reward_transfer.cli import check_command_line, entry_point
from reward_transfer.errors import UserError


def test_entry_point_reads_dotenv_without_overriding_the_environment(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("RT_TEST_TOKEN=from-file\nRT_TEST_KEPT=from-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RT_TEST_TOKEN", raising=False)
    monkeypatch.setenv("RT_TEST_KEPT", "from-environment")
    with entry_point():
        assert os.environ["RT_TEST_TOKEN"] == "from-file"
        assert os.environ["RT_TEST_KEPT"] == "from-environment"
    monkeypatch.delenv("RT_TEST_TOKEN")


def test_user_error_becomes_one_line_and_exit_code_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info, entry_point():
        raise UserError("data/x.jsonl: missing column problem")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: data/x.jsonl: missing column problem\n"


# ---------------------------------------------------------------------- the command line of a Hydra script
def run_script(script: str, *argv: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / f"{script}.py"), *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_an_added_typo_key_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    # Hydra's own hint `+key=value` would store the key and the schema would ignore it.
    result = run_script("train_reward_model", "--config-name=demo_math", f"output_dir={tmp_path / 'model'}",
                        "+typo=1", cwd=tmp_path)
    assert_one_line(result, "unknown key 'typo'")
    assert list(tmp_path.iterdir()) == []  # no model, no outputs/<date>/<time> Hydra folder


@pytest.mark.parametrize(("argv", "fragments"), [
    (["train.epoch=2"], ["unknown key 'train.epoch'", "did you mean 'train.epochs'"]),
    (["+train.epoch=2"], ["unknown key 'train.epoch'"]),
    (["train.epochs=abc"], ["train.epochs=abc", "could not be converted"]),
    (["train.epochs"], ["cannot read the override"]),
])
def test_command_line_mistakes_name_the_key(argv, fragments):
    with pytest.raises(UserError) as err:
        check_command_line("train_reward_model", ["--config-name=demo_math", *argv], None)
    assert "\n" not in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_a_missing_or_unknown_config_name_lists_the_available_ones():
    for argv in ([], ["--config-name=demo_mat"]):
        with pytest.raises(UserError, match=r"available: .*demo_math"):
            check_command_line("eval", argv, None)
    with pytest.raises(UserError, match=r"no profile named 'tny'.*available: paper, paper_published, preflight, tiny"):
        check_command_line("reproduce", ["profile=tny"], "config")


def test_declared_and_dict_keys_pass_and_plus_on_a_declared_key_is_accepted():
    name, overrides = check_command_line(
        "reproduce", ["dry_run=true", "+paper=true", "profile.models.sft.science=some/model"], "config")
    assert name == "config"
    assert overrides == ["dry_run=true", "paper=true", "+profile.models.sft.science=some/model"]


def test_help_lists_named_configs_and_main_keys():
    result = run_script("eval", "--help")
    assert result.returncode == 0, result.stderr
    assert "demo_math_best_of_n" in result.stdout and "dataset: datasets=" in result.stdout
    assert "mode='pairs'" in result.stdout


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory no stage can write to, and the command prefix that makes it so: a read-only tmpfs in a private
    mount namespace for root (who ignores permission bits), mode 0555 for anyone else."""
    target = tmp_path / "read-only"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target, []
        target.chmod(0o755)
        return
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("root without mount namespaces: no way to make a read-only directory here")
    yield target, ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none {target} && exec \"$@\"", "sh"]


@pytest.mark.parametrize(("script", "argv"), [
    ("train_reward_model", ["--config-name=demo_math"]),
    ("eval", ["--config-name=demo_math"]),
    ("active_data_selection", ["--config-name=demo_math_initial"]),
    ("generate_preference_data", ["--config-name=demo_math"]),
])
def test_a_read_only_output_dir_is_one_line_before_any_work(script, argv, read_only_dir, tiny_models):
    target, prefix = read_only_dir
    key = "dataset.output_dataset_name_or_path" if script == "active_data_selection" else "output_dir"
    model = [] if script == "generate_preference_data" else [f"model.model_name_or_path={tiny_models['rm']}"]
    result = subprocess.run([*prefix, sys.executable, str(REPO_ROOT / f"{script}.py"), *argv, *model,
                             f"{key}={target / 'out'}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert_one_line(result, f"{key}={target / 'out'}: cannot write to {target}", "Read-only file system"
                    if os.geteuid() == 0 else "Permission denied")


def test_a_stage_run_by_hand_leaves_only_its_output(tmp_path, tiny_models):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{a}+{a}?", "accepted": str(2 * a), "rejected": str(3 * a)})
                            + "\n" for a in range(4)))
    work = tmp_path / "work"
    work.mkdir()
    result = run_script("train_reward_model", "--config-name=demo_math", f"model.model_name_or_path={tiny_models['rm']}",
                        f"dataset.datasets=[{{name_or_path:{data},split:train}}]", "output_dir=model",
                        "train.max_steps=1", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ["model"]  # no outputs/<date>/<time>/ Hydra folder
