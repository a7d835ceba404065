"""gpu_check on a CPU machine: it refuses at once without CUDA, and its InternLM2 check passes in bf16 here."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from reward_transfer.gpu_check import Report, check_internlm2


@pytest.mark.parametrize("argv", [[], ["--real"]])
def test_without_cuda_it_exits_at_once_with_a_clear_message(argv):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "reward_transfer.gpu_check", *argv], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA device visible: it checks the GPU paths (bf16, vLLM, DeepSpeed) and needs an NVIDIA GPU; "
        "nothing was run"]


def test_the_internlm2_check_compares_bf16_scores_with_get_scores(tmp_path, capsys):
    report = Report()
    check_internlm2(report, tmp_path, device="cpu")
    line = capsys.readouterr().out.strip()
    assert report.failed == [], line
    assert line.startswith("PASS internlm2") and "two loads identical: True" in line
