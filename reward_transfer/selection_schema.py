"""The config schema of `active_data_selection.py` (apart from `active_learning`, so composing a config imports no
datasets or torch), and the names of the selection state's files."""

from dataclasses import dataclass, field

from reward_transfer.config import HubConfig, PathsConfig, ScoringModelConfig, register_schema

STATE_INFO = "al_state.json"
SELECTED_INFORMATION = "selected_information.npy"  # fisher: its picks' information vectors, in `selected` order
SUMMARY_FILE = "selection_summary.json"
TRAIN_ON = ("new", "all")


@dataclass
class SelectionDatasetConfig:
    # Round 1: a pair dataset (its train split is the pool); later rounds: the state. Default: the original code's
    # one state of the domain, <paths.root>/active_learning/<domain>/state, read and rewritten by every round.
    dataset_name_or_path: str = "${layout:al_state,${domain}}"
    output_dataset_name_or_path: str = "${layout:al_state,${domain}}"  # the state directory written
    pairs_to_select: int = 2500
    max_to_look_at: int | None = 40000  # pool pairs scored per round (None: all); unscanned pairs stay in U
    # Round 1: the pool is the train split's seeded sample of this many pairs, the very rows training reads with
    # dataset.max_examples=<pool_size> and the same seed (Table 1's 60k). None: the whole train split.
    pool_size: int | None = None
    pool_seed: int | None = None  # round 1's sampling seed (None: `seed`); a chain of its own seed keeps R_truth's
    batch_size: int = 16  # conversations per forward pass at most
    max_batch_tokens: int = 16384  # padded tokens per forward pass at most (long conversations: smaller batches)
    columns: dict[str, str] = field(default_factory=dict)  # round 1: the pool's own names of the pair roles


@dataclass
class SelectionConfig:
    # The paper's margin (sample with P ∝ exp(-margin/T)), argmin, random; beyond it fisher, diversity, large_gap
    # (reward_transfer/selection_strategies.py, the one registry).
    strategy: str = "margin"
    temperature: float = 1.0  # margin
    ridge: float = 1.0  # fisher: weight of the prior λI in the information matrix
    ensemble: int = 8  # large_gap: ridge heads in the ensemble
    ucb_beta: float = 1.0  # large_gap: weight of the ensemble's spread in the upper confidence bound
    condition_on_selected: bool = True  # fisher: start the design from the pairs already selected (the state's record)
    train_on: str = "new"  # new: train on this round's picks (the original code) | all: on every pair selected so far


@dataclass
class ActiveDataSelectionConfig:
    domain: str = "???"
    paths: PathsConfig = field(default_factory=PathsConfig)
    # The scoring model; default: the previous round's merged model (round 1: the general RM, `initial.yaml`).
    model: ScoringModelConfig = field(
        default_factory=lambda: ScoringModelConfig("${layout:merged,active_learning_${domain}}"))
    dataset: SelectionDatasetConfig = field(default_factory=SelectionDatasetConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    seed: int = 42
    overwrite: bool = False  # replace an output state that holds another selection
    huggingface: HubConfig = field(default_factory=HubConfig)


register_schema("active_data_selection", ActiveDataSelectionConfig)
# How fast or where a selection runs, never which pairs it picks (plus rerun.COMMON_RESUMABLE_KEYS).
RESUMABLE_KEYS = ("dataset.batch_size", "dataset.max_batch_tokens", "dataset.output_dataset_name_or_path",
                  "model.device")
