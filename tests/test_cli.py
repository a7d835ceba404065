"""Every entry point reads `.env` (HF_TOKEN, WANDB_API_KEY as the seed README asks) and turns expected
failures into one line with exit code 1."""

import os

import pytest

from reward_transfer.cli import entry_point
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
