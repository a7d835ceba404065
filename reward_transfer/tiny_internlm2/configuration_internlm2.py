"""InternLM2's config as its checkpoints ship it (remote code), for the tiny offline stand-in.

Written for this project after the published `configuration_internlm2.py`; it keeps the traits that break
under transformers 5: `rope_scaling` stored through the base class (which transformers 5 rewrites into its
`rope_parameters` dict, without the legacy `type` key when the checkpoint has no scaling), a two-key
`rope_scaling` check, `attn_implementation` as a config field, and `num_labels` left at the default 2.
"""

from transformers.configuration_utils import PretrainedConfig


class InternLM2Config(PretrainedConfig):
    """Configuration of an InternLM2 model (`model_type` internlm2, mapped through `auto_map`)."""

    model_type = "internlm2"
    _auto_class = "AutoConfig"

    def __init__(self, vocab_size=103168, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, hidden_act="silu", max_position_embeddings=2048,
                 initializer_range=0.02, rms_norm_eps=1e-6, use_cache=True, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2, pretraining_tp=1, tie_word_embeddings=False, bias=True, rope_theta=10000,
                 rope_scaling=None, attn_implementation=None, **kwargs):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.bias = bias
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.pretraining_tp = pretraining_tp
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self._rope_scaling_validation()
        self.attn_implementation = attn_implementation or "eager"
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)

    def _rope_scaling_validation(self):
        """As the published code: None, or exactly {type: linear|dynamic, factor: float >= 1}."""
        if self.rope_scaling is None:
            return
        if not isinstance(self.rope_scaling, dict) or len(self.rope_scaling) != 2:
            raise ValueError(f"`rope_scaling` must be a dictionary with two fields, `type` and `factor`, "
                             f"got {self.rope_scaling}")
        scaling_type = self.rope_scaling.get("type", None)
        scaling_factor = self.rope_scaling.get("factor", None)
        if scaling_type is None or scaling_type not in ["linear", "dynamic"]:
            raise ValueError(f"`rope_scaling`'s type field must be one of ['linear', 'dynamic'], got {scaling_type}")
        if scaling_factor is None or not isinstance(scaling_factor, (int, float)) or scaling_factor < 1.0:
            raise ValueError(f"`rope_scaling`'s factor field must be a number >= 1, got {scaling_factor}")
