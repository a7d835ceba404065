"""A reward model in a file of its own that imports the InternLM2 backbone from `modeling_internlm2.py`: the layout of
many published reward wrappers. The rotary classes live only in the backbone's file."""

from .modeling_internlm2 import InternLM2ForRewardModel


class InternLM2RewardWrapper(InternLM2ForRewardModel):
    """InternLM2's reward model, as a wrapper repository would subclass it."""

    _auto_class = "AutoModel"
