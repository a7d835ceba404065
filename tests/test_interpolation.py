"""The DogeRM baseline: the general RM's backbone interpolated toward a domain's SFT model, no preference pairs."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from training_helpers import REPO_ROOT, score, synthetic_pairs

from reward_transfer.errors import UserError
from reward_transfer.interpolation import backbone, interpolate_reward_model
from reward_transfer.models import load_causal_lm, load_reward_model
from reward_transfer.tiny_internlm2 import build_tiny_internlm2


def config(rm, sft, out, weight):
    import reward_transfer.interpolation_schema  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs" / "interpolate_reward_model"), version_base="1.3"):
        return compose("base", [f"name={out.name}", f"reward_model={rm}", f"sft_model={sft}", f"output_dir={out}",
                                f"weight={weight}"])


def test_weight_zero_gives_the_reward_model_back_and_one_the_sft_backbone(tiny_models, tmp_path):
    rows = synthetic_pairs(6)
    problems, answers = [r["problem"] for r in rows], [r["accepted"] for r in rows]
    original, tokenizer = load_reward_model(str(tiny_models["rm"]), device="cpu", dtype="float32")
    unchanged = interpolate_reward_model(config(tiny_models["rm"], tiny_models["lm"], tmp_path / "zero", 0.0))
    merged, _ = load_reward_model(str(unchanged), device="cpu", dtype="float32")
    torch.testing.assert_close(score(merged, tokenizer, problems, answers), score(original, tokenizer, problems, answers))
    full = interpolate_reward_model(config(tiny_models["rm"], tiny_models["lm"], tmp_path / "one", 1.0))
    moved, _ = load_reward_model(str(full), device="cpu", dtype="float32")
    sft = load_causal_lm(str(tiny_models["lm"]), device="cpu", dtype="float32")
    for (name, value), (_, expected) in zip(backbone(moved).state_dict().items(), backbone(sft).state_dict().items(),
                                            strict=True):
        torch.testing.assert_close(value, expected, msg=name)
    torch.testing.assert_close(moved.score.weight, original.score.weight)  # the reward head is the RM's own
    half = interpolate_reward_model(config(tiny_models["rm"], tiny_models["lm"], tmp_path / "half", 0.5))
    between, _ = load_reward_model(str(half), device="cpu", dtype="float32")
    key = "layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(backbone(between).state_dict()[key], (backbone(original).state_dict()[key]
                                                                    + backbone(sft).state_dict()[key]) / 2)


def test_models_of_different_architectures_are_refused_in_one_line(tiny_models, tmp_path):
    internlm2 = build_tiny_internlm2(tmp_path / "internlm2")
    with pytest.raises(UserError, match="different architectures") as err:
        interpolate_reward_model(config(internlm2, tiny_models["lm"], tmp_path / "out", 0.5))
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    with pytest.raises(UserError, match=r"weight: λ must lie in \[0, 1\]"):
        interpolate_reward_model(config(tiny_models["rm"], tiny_models["lm"], tmp_path / "out", 1.5))
