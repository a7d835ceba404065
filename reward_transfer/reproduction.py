"""The study's grid as an ordered list of steps, and the runner behind `reproduce.py`.

Each step is one command of the project (script, named config, Hydra overrides). The runner either launches
it as that command (`profile.in_process=false`: a subprocess, through `accelerate launch` where configured) or
runs the same stage function in this process on the config Hydra's compose API builds from the same named
config and overrides (the tiny profile: ~100 steps would spend most of their time importing torch otherwise).

Rerun rule. A step is what it produces: its script, config and overrides (`Step.identity`), not the launcher or
the interpreter that runs it. A finished step whose identity, outputs and inputs are unchanged is skipped. A
step whose identity changed runs again and its stage applies the one rerun rule of every stage (same settings:
"already complete"; other settings: a one-line error naming the key, unless `overwrite=true`). A step whose
input was redone since it ran is redone with `overwrite=true`: that redo replaces its output, it never deletes
it first. reproduce.py itself deletes nothing. The first failure stops the run with its command and log tail.
"""

import contextlib
import dataclasses
import fnmatch
import hashlib
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reward_transfer import run_layout as layout
from reward_transfer.cli import SCHEMAS
from reward_transfer.config import register_schema
from reward_transfer.domains import get_domain
from reward_transfer.errors import UserError
from reward_transfer.storage import atomic_write_json, atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
# Hydra scripts: script name → (module, stage function). The module registers the config schema on import.
STAGES = {
    "generate_preference_data": ("reward_transfer.generation", "generate_preference_data"),
    "train_sft_model": ("reward_transfer.sft", "train_sft_model"),
    "train_reward_model": ("reward_transfer.training", "train_reward_model"),
    "eval": ("reward_transfer.evaluation", "evaluate"),
    "active_data_selection": ("reward_transfer.active_learning", "select_pairs"),
}
LAUNCHED = {"train_sft_model", "train_reward_model", "eval", "active_data_selection"}
# A step kind's script (by the kind's first word: train_truth → train).
CONFIG_SCRIPT = {"generate": "generate_preference_data", "train": "train_reward_model", "eval": "eval",
                 "best": "eval", "select": "active_data_selection", "sft": "train_sft_model"}  # the seed runs these under accelerate
LOG_TAIL_LINES = 25


# ------------------------------------------------------------------------------------------------- config
@dataclass
class ModelsProfile:
    sft: dict[str, str] = field(default_factory=dict)  # domain → SFT model of the ground-truth RM
    general: str = "???"  # the general-purpose RM


@dataclass
class SftProfile:
    train: bool = False  # true: SFT each domain's model here (train_sft_model.py) instead of models.sft's
    base: dict[str, str] = field(default_factory=dict)  # domain → the causal LM that SFT starts from
    # With train=true: the share of each domain's problems generation reserves for SFT (dataset.sft_share), so the
    # SFT base and the reward-model data are disjoint by construction (SFT excludes the rest, recorded with the data).
    share: float = 0.1


@dataclass
class SizesProfile:
    full: int | None = None  # N_T: training pairs of the ground-truth RM (null: the whole train split)
    subsets: list[int] = field(default_factory=list)  # Table 1's fine-tuning sizes (the largest = full)
    eval_max_examples: int | None = None  # evaluation pairs per domain (null: the whole eval split)


@dataclass
class ActiveLearningProfile:
    rounds: int = 3
    pairs_per_round: int = 2500
    max_to_look_at: int | None = 40000
    strategies: list[str] = field(default_factory=lambda: ["margin", "random"])
    random_subsets: bool = True  # also fine-tune the general RM once on k·n random pairs (`<d>_2.5k`, ...)
    train_on: str = "new"  # new: fine-tune last round's model on the new picks | all: retrain the start on L


@dataclass
class ProfileConfig:
    name: str = "???"
    domains: list[str] = field(default_factory=lambda: list(layout.PAPER_DOMAINS))
    in_process: bool = True
    launcher: str = ""  # e.g. "accelerate launch --config_file=deepspeed/1_1GPU.yaml"
    python: str = "python"
    tiny_models: str | None = None  # build the tiny offline models into this directory first
    offline: bool = False  # force the Hugging Face libraries offline
    cpu_threads: int | None = None  # torch/OpenMP threads (null: torch's default, one per core)
    models: ModelsProfile = field(default_factory=ModelsProfile)
    sft: SftProfile = field(default_factory=SftProfile)
    sizes: SizesProfile = field(default_factory=SizesProfile)
    active_learning: ActiveLearningProfile = field(default_factory=ActiveLearningProfile)
    # Domain → an existing pair dataset (Hub name or directory with train/eval splits, e.g. the published
    # eth-dl-rewards/pref-data-math) used instead of generating one: no generate step, no best-of-n (no candidates).
    pair_data: dict[str, str] = field(default_factory=dict)
    # Step kind → named config template; fields: domain, source, name, initial ("_initial" in round 1), eval_config.
    # A kind's round-1 config may be named apart as `<kind>_initial` (select_initial, train_al_initial, ...).
    config_names: dict[str, str] = field(default_factory=dict)
    # Step kind → extra overrides every step of that kind gets (e.g. what the demo configs leave out).
    overrides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ReproduceConfig:
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    output_dir: str = "outputs/reproduce/${profile.name}"
    dry_run: bool = False
    only: Any = field(default_factory=list)  # step/group patterns to run (fnmatch), e.g. [generate, "eval/*"]
    skip: Any = field(default_factory=list)  # step/group patterns to leave out
    best_of_n: bool = True
    paper: bool = False  # the report puts the paper's numbers beside ours
    overwrite: bool = False  # a step whose settings changed replaces its finished output (else: refused)


register_schema("reproduce", ReproduceConfig)


# -------------------------------------------------------------------------------------------------- steps
@dataclass
class Step:
    """One command of the grid: `script` with a named config and overrides (or argparse flags in `args`)."""

    name: str  # unique, "<kind>/<result name>", e.g. "train/math_20k"
    group: str  # for only=/skip=: setup, generate, truth, finetune, cross, eval, active_learning, best_of_n, report
    script: str
    config_name: str | None = None
    overrides: list[str] = field(default_factory=list)
    args: dict[str, str | bool] = field(default_factory=dict)  # --flags of argparse scripts (True: bare flag)
    positional: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # files whose existence means the step is complete
    needs: list[str] = field(default_factory=list)  # steps whose outputs this one reads
    always: bool = False  # run even when done (the report)

    def argv(self, profile: ProfileConfig) -> list[str]:
        """The command line, as a researcher would type it."""
        if self.script == "tiny":
            program = [profile.python, "-m", "reward_transfer.tiny"]
        elif profile.launcher and self.script in LAUNCHED:
            program = [*shlex.split(profile.launcher), f"{self.script}.py"]
        else:
            program = [profile.python, f"{self.script}.py"]
        if self.config_name is not None:
            return [*program, f"--config-name={self.config_name}", *self.overrides]
        flags = [item for key, value in self.args.items()
                 for item in ([f"--{key}"] if value is True else [f"--{key}", str(value)])]
        return [*program, *self.positional, *flags]

    def command(self, profile: ProfileConfig) -> str:
        return shlex.join(self.argv(profile))

    def identity(self) -> dict[str, Any]:
        """What the step produces, whatever runs it (launcher, interpreter and in-process or not are left out)."""
        return {"script": self.script, "config_name": self.config_name, "overrides": list(self.overrides),
                "args": dict(self.args), "positional": list(self.positional)}

    def replacing(self) -> "Step":
        """The same step told to replace its finished output (its stage's `overwrite`)."""
        if self.config_name is not None:
            return dataclasses.replace(self, overrides=[*self.overrides, "overwrite=true"])
        if self.script == "merge_peft_model":
            return dataclasses.replace(self, args={**self.args, "overwrite": True})
        return self

    @property
    def slug(self) -> str:
        """The step's name as a file name (logs, markers)."""
        return _slug(self.name)


def _slug(step_name: str) -> str:
    return step_name.replace("/", "__")


def _dataset_override(path: Path, split: str) -> str:
    return f"dataset.datasets=[{{name_or_path:{path},split:{split}}}]"


def _null(value: int | None) -> str:
    return "null" if value is None else str(value)


class GridBuilder:
    """Builds the ordered steps of the study for one profile and run folder."""

    def __init__(self, profile: ProfileConfig, run: Path, best_of_n: bool = True, paper: bool = False):
        self.profile, self.run, self.with_best_of_n, self.paper = profile, Path(run), best_of_n, paper
        self.steps: list[Step] = []
        self.eval_configs: dict[str, str] = {}
        self.cells: dict[str, dict[str, Any]] = {}  # result name → what it is (grid.json; the report reads it)

    # -- helpers
    def _config(self, kind: str, **fields: str) -> str:
        """The named config of a step: `config_names.<kind>` (`<kind>_initial` in round 1), else — when that file
        does not exist, e.g. a cross-domain run with a new domain — `config_names.<kind>_default`."""
        names = self.profile.config_names
        template = names.get(f"{kind}_initial") if fields.get("initial") and f"{kind}_initial" in names else names.get(kind)
        if template is None:
            raise UserError(f"profile {self.profile.name}: config_names.{kind} is not set")
        name = self._format(kind, template, fields)
        script = CONFIG_SCRIPT[kind.split("_")[0]]
        if not (CONFIGS / script / f"{name}.yaml").is_file() and f"{kind}_default" in names:
            name = self._format(f"{kind}_default", names[f"{kind}_default"], fields)
        if not (CONFIGS / script / f"{name}.yaml").is_file():
            raise UserError(f"profile {self.profile.name}: no config {name} in configs/{script}/ for a {kind} step "
                            f"(config_names.{kind}: '{template}'; add the file or config_names.{kind}_default)")
        return name

    def _format(self, kind: str, template: str, fields: dict[str, str]) -> str:
        known = {"domain": "", "name": "", "source": "", "initial": "", "eval_config": "", **fields}
        try:
            return template.format(**known)
        except (KeyError, IndexError, ValueError) as err:
            raise UserError(f"profile {self.profile.name}: config_names.{kind} '{template}': {err!r} "
                            f"(fields: {', '.join('{' + k + '}' for k in known)})") from err

    def _extra(self, kind: str) -> list[str]:
        return list(self.profile.overrides.get(kind, []))

    def _add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def _data(self, domain: str) -> Path | str:
        """The domain's pair dataset: the one the profile names, else what the generate step writes."""
        return self.profile.pair_data.get(domain) or layout.data_dir(self.run, domain)

    def _data_needs(self, domain: str) -> list[str]:
        """The step that makes the domain's pair data ([] when the profile gives an existing dataset)."""
        return [] if domain in self.profile.pair_data else [f"generate/{domain}"]

    def _model_path(self, name: str) -> str:
        return str(layout.model_dir(self.run, name))

    def _merged_path(self, name: str) -> str:
        return str(layout.merged_dir(self.run, name))

    # -- stages
    def tiny_models(self) -> None:
        out = self.profile.tiny_models
        self._add(Step("setup/tiny_models", "setup", "tiny", args={"out": out},
                       outputs=[str(Path(out) / "COMPLETE")]))

    def generate(self, domain: str) -> None:
        out = layout.data_dir(self.run, domain)
        share = [f"dataset.sft_share={self.profile.sft.share}"] if self.profile.sft.train and self.profile.sft.share else []
        self._add(Step(f"generate/{domain}", "generate", "generate_preference_data",
                       self._config("generate", domain=domain),
                       [f"output_dir={out}", *share, *self._extra("generate")],
                       outputs=[str(out / "dataset_dict.json"), str(out / "candidates")],
                       needs=self._setup_needs()))

    def sft(self, domain: str) -> Step:
        """SFT of the domain's base model on reference solutions of problems its pair data does not hold."""
        out = layout.model_dir(self.run, layout.sft_name(domain))
        overrides = [f"name={layout.sft_name(domain)}", f"model.model_name_or_path={self.profile.sft.base[domain]}",
                     f"dataset.exclude=[{self._data(domain)}]", f"output_dir={out}", "train.resume=true",
                     "overwrite=false", *self._extra("sft")]
        return self._add(Step(f"sft/{domain}", "sft", "train_sft_model", self._config("sft", domain=domain),
                              overrides, outputs=[str(out / "config.json"), str(out / "sft_problems.json")],
                              needs=[*self._data_needs(domain), *self._setup_needs()]))

    def sft_model(self, domain: str) -> str:
        """The causal LM the domain's ground-truth RM starts from: SFT'd here, or the profile's."""
        if self.profile.sft.train:
            return str(layout.model_dir(self.run, layout.sft_name(domain)))
        return self.profile.models.sft[domain]

    def _sft_needs(self, domain: str) -> list[str]:
        return [f"sft/{domain}"] if self.profile.sft.train else []

    def _setup_needs(self) -> list[str]:
        return ["setup/tiny_models"] if self.profile.tiny_models else []

    def train(self, kind: str, group: str, name: str, domain: str, start: str, size: int | None,
              needs: list[str], data: Path | None = None, **fields: str) -> Step:
        data = data or self._data(domain)
        config = self._config(kind, domain=domain, name=name, **fields)
        overrides = [
            f"name={name}", f"model.model_name_or_path={start}", _dataset_override(data, "train"),
            f"dataset.max_examples={_null(size)}", f"output_dir={self._model_path(name)}",
            "train.resume=true",  # re-running the grid continues an interrupted training from its checkpoint
            "overwrite=false",  # the grid decides what is replaced (the AL configs' own overwrite=true would not)
            *self._extra(kind),
        ]
        out = layout.model_dir(self.run, name)
        return self._add(Step(f"train/{name}", group, "train_reward_model", config, overrides,
                              outputs=[str(out / "log_history.json"), str(out / "train_config.yaml")],
                              needs=[*needs, *self._setup_needs()]))

    def merge(self, group: str, name: str, base: str, needs: list[str]) -> Step:
        out = self._merged_path(name)
        return self._add(Step(f"merge/{name}", group, "merge_peft_model",
                              args={"base_model": base, "model_name": self._model_path(name), "output_dir": out},
                              outputs=[str(Path(out) / "config.json")], needs=[f"train/{name}", *needs]))

    def evaluate(self, group: str, name: str, domain: str, model: str, needs: list[str], cell: layout.Cell,
                 kind: str = "eval", **fields: str) -> Step:
        config = self._config(kind, domain=domain, name=name, **fields)
        self.eval_configs[name] = config
        out = layout.eval_dir(self.run, name)
        self.cells[name] = {**dataclasses.asdict(cell), "mode": "pairs", "model": name,
                            "results": str(out.relative_to(self.run) / "results.json")}
        overrides = [
            f"name={name}", f"model.model_name_or_path={model}",
            _dataset_override(self._data(domain), "eval"),
            f"dataset.max_examples={_null(self.profile.sizes.eval_max_examples)}", f"output_dir={out}",
            *self._extra("eval"),
        ]
        return self._add(Step(f"eval/{name}", group, "eval", config, overrides,
                              outputs=[str(out / "results.json")], needs=[*needs, *self._data_needs(domain)]))

    def best_of_n(self, name: str, domain: str, model: str, needs: list[str]) -> Step:
        bon = layout.best_of_n_name(name)
        config = self._config("best_of_n", domain=domain, name=name, eval_config=self.eval_configs.get(name, name))
        data = layout.data_dir(self.run, domain)
        out = layout.eval_dir(self.run, bon)
        self.cells[bon] = {**self.cells[name], "mode": "best_of_n",
                           "results": str(out.relative_to(self.run) / "results.json")}
        overrides = [
            "mode=best_of_n", f"name={bon}", f"model.model_name_or_path={model}", _dataset_override(data, "eval"),
            f"best_of_n.candidates={layout.candidates_dir(self.run, domain)}", f"output_dir={out}",
            *self._extra("best_of_n"),
        ]
        return self._add(Step(f"best_of_n/{name}", "best_of_n", "eval", config, overrides,
                              outputs=[str(out / "results.json")], needs=[*needs, *self._data_needs(domain)]))

    def select(self, domain: str, strategy: str, round_index: int, model: str, needs: list[str]) -> Step:
        al = self.profile.active_learning
        pool = (self._data(domain) if round_index == 1
                else layout.al_state_dir(self.run, domain, strategy, round_index - 1))
        out = layout.al_state_dir(self.run, domain, strategy, round_index)
        initial = "_initial" if round_index == 1 else ""
        overrides = [
            f"model.model_name_or_path={model}", f"dataset.dataset_name_or_path={pool}",
            f"dataset.output_dataset_name_or_path={out}", f"dataset.pairs_to_select={al.pairs_per_round}",
            f"dataset.max_to_look_at={_null(al.max_to_look_at)}", f"selection.strategy={strategy}",
            f"selection.train_on={al.train_on}",
            # The pool is the ground truth's training set (Table 1's 60k), sampled as training samples it.
            *([f"dataset.pool_size={_null(self.profile.sizes.full)}"] if round_index == 1 else []),
            *self._extra("select"),
        ]
        name = layout.active_learning_name(domain, strategy, round_index)
        return self._add(Step(f"select/{name}", "active_learning", "active_data_selection",
                              self._config("select", domain=domain, initial=initial), overrides,
                              outputs=[str(out / "dataset_dict.json")], needs=[*needs, *self._setup_needs()]))

    # -- the grid
    def build(self) -> list[Step]:
        """generate → ground truth → fine-tunes → cross-domain → Table 1 evals → AL rounds → best-of-n → report."""
        profile, domains = self.profile, list(self.profile.domains)
        sizes, al = profile.sizes, profile.active_learning
        subsets = sorted(sizes.subsets)
        general = profile.models.general
        if profile.tiny_models:
            self.tiny_models()
        for domain in domains:
            get_domain(domain, "profile.domains")
        source, key = (profile.sft.base, "sft.base") if profile.sft.train else (profile.models.sft, "models.sft")
        missing_sft = [d for d in domains if d not in source]
        if missing_sft:
            raise UserError(f"profile.{key}: no model for {', '.join(missing_sft)} (set "
                            f"profile.{key}.{missing_sft[0]}=<model>)")
        unknown = set(profile.pair_data) - set(domains)
        if unknown:
            raise UserError(f"profile.pair_data: {', '.join(sorted(unknown))} not in profile.domains "
                            f"({', '.join(domains)})")
        for domain in domains:
            if domain not in profile.pair_data:
                self.generate(domain)
        for domain in domains:
            if profile.sft.train:
                self.sft(domain)
        for domain in domains:
            self.train("train_truth", "truth", layout.truth_name(domain), domain, self.sft_model(domain),
                       sizes.full, [*self._data_needs(domain), *self._sft_needs(domain)])
        for domain in domains:
            self.merge("truth", layout.truth_name(domain), self.sft_model(domain), self._sft_needs(domain))
        random_sizes = [k * al.pairs_per_round for k in range(1, al.rounds + 1)] if al.random_subsets else []
        for domain in domains:
            for size in sorted(set(subsets) | set(random_sizes)):
                self.train("train_gen", "finetune", layout.general_name(domain, size), domain, general, size,
                           self._data_needs(domain))
        # Every ordered pair of domains: the ground-truth RM of `source` fine-tuned on `domain`'s pairs.
        crosses = [(domain, source) for domain in domains for source in domains if source != domain]
        for domain, source in crosses:
            for size in subsets:
                start = self._merged_path(layout.truth_name(source))
                self.train("train_cross", "cross", layout.cross_name(domain, source, size), domain, start, size,
                           [*self._data_needs(domain), f"merge/{layout.truth_name(source)}"], source=source)
        self._table1_evals(domains, crosses, sorted(set(subsets) | set(random_sizes)))
        finals = self._active_learning(domains)
        if self.with_best_of_n:
            self._best_of_n(domains, crosses, subsets, finals)
        self._add(Step("report", "report", "report", positional=[str(self.run)],
                       args={"paper": True} if self.paper else {}, always=True))
        return self.steps

    def _table1_evals(self, domains: list[str], crosses: list[tuple[str, str]], gen_sizes: list[int]) -> None:
        Cell = layout.Cell
        for domain in domains:
            truth = layout.truth_name(domain)
            self.evaluate("eval", truth, domain, self._model_path(truth), [f"train/{truth}"], Cell(domain, "truth"))
            self.evaluate("eval", layout.general_name(domain, 0), domain, self.profile.models.general, [],
                          Cell(domain, "gen", size=0))
            for size in gen_sizes:
                name = layout.general_name(domain, size)
                self.evaluate("eval", name, domain, self._model_path(name), [f"train/{name}"],
                              Cell(domain, "gen", size=size))
        for domain, source in crosses:
            source_truth = layout.truth_name(source)
            self.evaluate("eval", layout.cross_name(domain, source, 0), domain, self._merged_path(source_truth),
                          [f"merge/{source_truth}"], Cell(domain, "from", size=0, source=source))
            for size in self.profile.sizes.subsets:
                name = layout.cross_name(domain, source, size)
                self.evaluate("eval", name, domain, self._model_path(name), [f"train/{name}"],
                              Cell(domain, "from", size=size, source=source))

    def _active_learning(self, domains: list[str]) -> dict[tuple[str, str], str]:
        """The rounds of every (domain, strategy); returns the last round's name per (domain, strategy)."""
        return {(domain, strategy): self.active_learning_chain(domain, strategy)
                for domain in domains for strategy in self.profile.active_learning.strategies}

    def active_learning_chain(self, domain: str, strategy: str) -> str:
        """select → train → eval → merge per round, each round starting from the last one's merged model (with
        `train_on=all`: each round retrains the general RM on every pair selected so far, scored by the last
        round's model). The one definition of the rounds: `reproduce.py` and `active_learning_loop.py` use it."""
        al, general = self.profile.active_learning, self.profile.models.general
        if al.train_on not in ("new", "all"):
            raise UserError(f"active_learning.train_on: '{al.train_on}' is not one of new, all")
        scorer, scorer_needs = general, []
        for k in range(1, al.rounds + 1):
            name = layout.active_learning_name(domain, strategy, k)
            initial = "_initial" if k == 1 else ""
            state = layout.al_state_dir(self.run, domain, strategy, k)
            previous = [f"select/{layout.active_learning_name(domain, strategy, k - 1)}"] if k > 1 else []
            select = self.select(domain, strategy, k, scorer, [*scorer_needs, *self._data_needs(domain), *previous])
            start, start_needs = (general, []) if al.train_on == "all" else (scorer, scorer_needs)
            self.train("train_al", "active_learning", name, domain, start, None, [select.name, *start_needs],
                       data=state, initial=initial)
            self.evaluate("active_learning", name, domain, self._model_path(name), [f"train/{name}"],
                          layout.Cell(domain, "al", size=k * al.pairs_per_round, strategy=strategy, round_index=k),
                          kind="eval_al", initial=initial)
            self.merge("active_learning", name, start, start_needs)
            scorer, scorer_needs = self._merged_path(name), [f"merge/{name}"]
        return layout.active_learning_name(domain, strategy, al.rounds)

    def _best_of_n(self, domains: list[str], crosses: list[tuple[str, str]], subsets: list[int],
                   finals: dict[tuple[str, str], str]) -> None:
        """Best-of-n with each final model: R_truth, the untouched and fully fine-tuned R_gen, the full
        cross-domain fine-tune and the last round of each active-learning strategy."""
        full = max(subsets) if subsets else None
        for domain in domains:
            if domain in self.profile.pair_data:
                continue  # an existing pair dataset has no candidates to rerank
            truth = layout.truth_name(domain)
            self.best_of_n(truth, domain, self._model_path(truth), [f"train/{truth}"])
            self.best_of_n(layout.general_name(domain, 0), domain, self.profile.models.general, [])
            if full is not None:
                name = layout.general_name(domain, full)
                self.best_of_n(name, domain, self._model_path(name), [f"train/{name}"])
            for target, source in crosses:
                if target == domain and full is not None:
                    name = layout.cross_name(domain, source, full)
                    self.best_of_n(name, domain, self._model_path(name), [f"train/{name}"])
            for (target, _), name in finals.items():
                if target == domain:
                    self.best_of_n(name, domain, self._model_path(name), [f"train/{name}"])


def build_grid(cfg: DictConfig) -> list[Step]:
    """The ordered steps of the study for `cfg.profile`, writing into `cfg.output_dir`."""
    profile = OmegaConf.to_object(cfg.profile)
    return GridBuilder(profile, Path(cfg.output_dir), best_of_n=cfg.best_of_n, paper=cfg.paper).build()


def grid_summary(profile: ProfileConfig, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the report needs (written as <run>/grid.json): the run's profile and models, its sizes, and what each
    result is (domain, kind, size, source, strategy, round: the report reads these, never folder names)."""
    subsets = sorted(profile.sizes.subsets)
    full = profile.sizes.full or (max(subsets) if subsets else None)
    al = profile.active_learning
    return {
        "profile": profile.name,
        "pipeline_check": bool(profile.tiny_models),  # tiny offline models: a test of the pipeline, not a result
        "models": {"general": profile.models.general,
                   "sft": {d: (f"trained here from {profile.sft.base.get(d)} (train_sft_model.py)" if profile.sft.train
                               else profile.models.sft.get(d)) for d in profile.domains}},
        "domains": list(profile.domains),
        "sizes": subsets,
        "full_size": {d: full for d in profile.domains},
        "al": {"rounds": al.rounds, "pairs_per_round": al.pairs_per_round, "strategies": list(al.strategies),
               "train_on": al.train_on},
        "results": cells,
    }


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


def select_steps(steps: list[Step], only: Any, skip: Any) -> list[Step]:
    """Steps whose name or group matches an `only` pattern (all when empty) and no `skip` pattern."""
    only, skip = _as_list(only), _as_list(skip)

    def matches(step: Step, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(step.name, p) or fnmatch.fnmatchcase(step.group, p) for p in patterns)

    known = {s.name for s in steps} | {s.group for s in steps}
    for pattern in only + skip:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in known):
            raise UserError(f"only/skip: '{pattern}' matches no step or group (groups: "
                            f"{', '.join(dict.fromkeys(s.group for s in steps))})")
    return [s for s in steps if (not only or matches(s, only)) and not matches(s, skip)]


def plan_notes(steps: list[Step], profile: ProfileConfig) -> list[str]:
    """What the named configs decide and the command lines don't show: the data each domain's pairs come from,
    the training order, and the active-learning pool (composed from each step's config, as its script would)."""
    notes = []
    for domain in profile.domains:
        if domain in profile.pair_data:
            notes.append(f"pairs of {domain}: {profile.pair_data[domain]} (given; not generated, no best-of-n)")
    kinds = ("generate_preference_data", "train_reward_model", "active_data_selection")
    planned = [step for step in steps if step.script in kinds]
    configs = dict(zip([step.name for step in planned], compose_configs(planned), strict=True))
    for step in planned:
        if step.script == "generate_preference_data":
            data = configs[step.name].dataset
            sources = ", ".join(f"{d.name_or_path} ({d.split})" for d in data.datasets)
            eval_split = (f"{data.eval_pairs} eval pairs" if data.eval_pairs is not None
                          else f"eval problems: {data.eval_size if data.eval_size is not None else data.eval_fraction}")
            notes.append(f"problems of {step.name.split('/', 1)[1]}: {sources}; {eval_split}")
    training = [configs[step.name].train.group_by_length for step in planned if step.script == "train_reward_model"]
    if training:
        notes.append(f"training order: {training.count(False)} of {len(training)} training steps shuffled, "
                     f"{training.count(True)} length-grouped (train.group_by_length)")
    pools = {configs[step.name].dataset.pool_size for step in planned
             if step.script == "active_data_selection" and "_initial" in (step.config_name or "")}
    if pools:
        notes.append("active-learning pool (round 1): " + ", ".join(
            "the whole train split" if size is None else f"the ground truth's {size} training pairs"
            for size in sorted(pools, key=lambda v: -1 if v is None else v)))
    return notes


def render_script(steps: list[Step], profile: ProfileConfig, notes: list[str] = ()) -> str:
    """The ordered command list as a shell script a researcher can read or run elsewhere."""
    lines = [
        "#!/usr/bin/env bash",
        f"# The study's grid, profile '{profile.name}': {len(steps)} commands, in order. Run from the repo root.",
        *(f"# {note}" for note in notes),
    ]
    if profile.in_process:
        lines.append("# reproduce.py runs these in one Python process (same configs through Hydra's compose API).")
    lines.append("set -euo pipefail")
    group = None
    for step in steps:
        if step.group != group:
            group = step.group
            lines += ["", f"# --- {group}"]
        lines.append(step.command(profile))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- running
class StepFailed(Exception):
    """A step of the grid failed; the message holds its command and the tail of its log."""


def _marker(run: Path, step_name: str) -> Path:
    return run / ".steps" / f"{_slug(step_name)}.done"


def _read_marker(run: Path, step_name: str) -> dict | None:
    try:
        return json.loads(_marker(run, step_name).read_text())
    except (OSError, ValueError):
        return None


# The record each stage keeps of what made an output (in the output's folder), and the part of it that is content:
# an output rebuilt from the same settings and inputs has the same record, whenever it was written.
CONTENT_RECORDS = (
    ("run_settings.json", lambda record: record),  # training, SFT, evaluation, merging
    ("generation_manifest.json", lambda record: [record["config"], record["input_fingerprint"]]),
    ("al_state.json", lambda record: record),  # the selection state: every round's settings and picks
)


def content_fingerprint(output: Path) -> str | None:
    """What an output is, not when it was written: a hash of its stage's record of the settings and inputs that made
    it (the file itself when it has none, e.g. the tiny models' COMPLETE); None when it is missing."""
    output = Path(output)
    if not output.exists():
        return None
    for folder in ([output] if output.is_dir() else []) + [output.parent]:
        for name, content in CONTENT_RECORDS:
            if (folder / name).is_file():
                payload = json.dumps(content(json.loads((folder / name).read_text())), sort_keys=True, default=str)
                return hashlib.sha256(payload.encode()).hexdigest()[:16]
    return hashlib.sha256(output.read_bytes()).hexdigest()[:16] if output.is_file() else None


def output_fingerprints(step: Step) -> list[str | None]:
    """The content fingerprint of each declared output (None: missing)."""
    return [content_fingerprint(Path(output)) for output in step.outputs]


def input_fingerprints(step: Step, graph: dict[str, Step]) -> dict[str, list[str | None]]:
    """The content fingerprints of what each step this one needs produced, as they are now."""
    return {need: output_fingerprints(graph[need]) for need in step.needs if need in graph}


def step_status(run: Path, step: Step, graph: dict[str, Step]) -> str:
    """done (skip) | new (run) | changed (run: its settings changed) | stale (redo: an input's content changed since;
    an input rebuilt identically, e.g. a deleted merged model merged again, leaves it done)."""
    marker = _read_marker(run, step.name)
    if step.always or marker is None:
        return "new"
    if marker.get("identity") != step.identity():
        return "changed"
    fingerprints = output_fingerprints(step)
    if None in fingerprints or fingerprints != marker.get("outputs"):
        return "new"  # outputs missing or rewritten outside the grid: the stage decides (it keeps the same run)
    recorded = marker.get("inputs", {})
    if any(recorded.get(need) != now for need, now in input_fingerprints(step, graph).items()):
        return "stale"
    return "done"


@contextlib.contextmanager
def captured_output(log_path: Path) -> Iterator[None]:
    """Send everything the step writes (Python, C extensions, progress bars) to `log_path`.

    Both levels: the file descriptors 1/2 (C code, handlers bound to the real streams) and sys.stdout/stderr
    (which need not be those descriptors, e.g. under pytest).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                yield
        finally:
            log_file.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def compose_configs(steps: list[Step]) -> list[DictConfig]:
    """The configs the steps' command lines would give their scripts (Hydra compose on the same config and
    overrides), one Hydra initialisation per script."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    composed: dict[int, DictConfig] = {}
    for script in dict.fromkeys(step.script for step in steps):
        importlib.import_module(SCHEMAS[script])
        GlobalHydra.instance().clear()  # reproduce.py's own @hydra.main instance, or a previous step's
        with initialize_config_dir(config_dir=str(CONFIGS / script), version_base="1.3"):
            for index, step in enumerate(steps):
                if step.script == script:
                    composed[index] = compose(config_name=step.config_name, overrides=list(step.overrides))
    return [composed[index] for index in range(len(steps))]


def compose_config(step: Step) -> DictConfig:
    """The config the step's command line would give its script."""
    return compose_configs([step])[0]


def run_in_process(step: Step) -> None:
    """Run the step's stage function in this process on the composed config."""
    if step.script == "tiny":
        from reward_transfer.tiny import ensure_tiny_models

        ensure_tiny_models(str(step.args["out"]))
    elif step.script == "merge_peft_model":
        from reward_transfer.merging import merge_adapter

        merge_adapter(str(step.args["base_model"]), str(step.args["model_name"]), output_dir=str(step.args["output_dir"]),
                      overwrite=bool(step.args.get("overwrite")))
    elif step.script == "report":
        from reward_transfer.reporting import write_report

        report = write_report(step.positional[0], paper=bool(step.args.get("paper")))
        print(report.tables_md.read_text())
    else:
        module, function = STAGES[step.script]
        cfg = compose_config(step)
        getattr(importlib.import_module(module), function)(cfg)


def run_subprocess(step: Step, profile: ProfileConfig, log_path: Path) -> None:
    """Run the step's command line, its output appended to the log."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python`/`accelerate` of this venv
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        result = subprocess.run(step.argv(profile), cwd=REPO_ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StepFailed(f"exit code {result.returncode}")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    # Progress bars rewrite one line with carriage returns: keep only the final state of each line.
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.rstrip().splitlines()[-lines:])


@dataclass
class StepResult:
    step: str
    status: str  # done | skipped | failed
    seconds: float
    warnings: list[str] = field(default_factory=list)


STAGE_WARNING = re.compile(r"^\s+WARNING:?\s+(?P<text>.+)$")


def stage_warnings(log_path: Path) -> list[str]:
    """The warnings a stage's end-of-run summary gave (a 0-pair generation, a training that learned nothing)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [m["text"] for line in lines if (m := STAGE_WARNING.match(line.rsplit("\r", 1)[-1]))]


def execute(step: Step, profile: ProfileConfig, run: Path, graph: dict[str, Step], replace: bool = False) -> None:
    """Run one step (in-process or as a subprocess) with its output in <run>/logs/<step>.log; mark it done.

    `replace`: run it with its stage's `overwrite=true` (an input was redone, or the user asked)."""
    log_path = run / "logs" / f"{step.slug}.log"
    launched = step.replacing() if replace else step
    command = launched.command(profile)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"$ {command}\n")
    started = time.perf_counter()
    if profile.in_process or step.script in ("tiny", "report"):
        with captured_output(log_path):
            try:
                run_in_process(launched)
            except BaseException as err:
                traceback.print_exc()
                if isinstance(err, KeyboardInterrupt):
                    raise
                raise StepFailed(f"{err.__class__.__name__}: {err}") from err
    else:
        run_subprocess(launched, profile, log_path)
    inputs = input_fingerprints(step, graph)
    atomic_write_json(_marker(run, step.name), {
        "identity": step.identity(), "command": command, "outputs": output_fingerprints(step), "inputs": inputs,
        "seconds": round(time.perf_counter() - started, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _environment(profile: ProfileConfig) -> None:
    """Offline profiles never reach the network (`.env` was read by the entry point)."""
    if profile.offline:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
        os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch/OpenMP threads for the steps (in-process and subprocesses); restored afterwards."""
    if not count:
        yield
        return
    import torch

    saved_threads, saved_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(count)
    os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        if saved_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_env


def check_inputs(steps: list[Step], run: Path) -> None:
    """Refuse, before running anything, a selection whose steps read what no selected or finished step made."""
    selected = {s.name for s in steps}
    for step in steps:
        missing = [n for n in step.needs if n not in selected and not _marker(run, n).exists()]
        if missing:
            raise UserError(f"step {step.name} needs {', '.join(missing)}, which has not run: "
                            "add it to only= (or drop it from skip=)")


def run_steps(steps: list[Step], profile: ProfileConfig, run: Path, overwrite: bool = False,
              graph: list[Step] = ()) -> list[StepResult]:
    """Run the steps in order, skipping finished ones; one console line per step and a progress bar. `graph`: every
    step of the grid (the inputs of a selection may come from steps outside it); default: `steps`."""
    from tqdm import tqdm

    by_name = {s.name: s for s in (graph or steps)}
    console = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)  # stays on the terminal while steps log
    results: list[StepResult] = []
    width = max(len(s.name) for s in steps)
    console.write(f"reproduce {profile.name}: {len(steps)} steps (commands.sh and logs/ in {run})\n")
    # disable=None: a live bar on a terminal; in a log file or CI the numbered step lines say the same.
    with console, tqdm(total=len(steps), file=console, unit="step", desc=f"reproduce {profile.name}",
                       dynamic_ncols=True, disable=None) as bar:
        for index, step in enumerate(steps, 1):
            prefix = f"[{index:>{len(str(len(steps)))}}/{len(steps)}] {step.name:<{width}}"
            status = step_status(run, step, by_name)
            if status == "done":
                results.append(StepResult(step.name, "skipped", 0.0))
                bar.write(f"{prefix}  skipped (done)", file=console)
                bar.update()
                continue
            if status == "stale":
                bar.write(f"{prefix}  an input was redone since it ran: redoing it", file=console)
            started = time.perf_counter()
            try:
                execute(step, profile, run, by_name, replace=status == "stale" or (status == "changed" and overwrite))
            except KeyboardInterrupt:
                bar.write(f"{prefix}  interrupted: rerun the same command to resume here (finished steps are kept; "
                          f"log: {run / 'logs' / f'{step.slug}.log'})", file=console)
                raise SystemExit(130) from None
            except StepFailed as err:
                log_path = run / "logs" / f"{step.slug}.log"
                bar.write(f"{prefix}  FAILED after {time.perf_counter() - started:.1f}s", file=console)
                raise UserError(
                    f"step {step.name} failed ({err})\n  command: {step.command(profile)}\n  log: {log_path}\n"
                    f"  last lines of the log:\n" + "\n".join(f"    {line}" for line in _tail(log_path).splitlines())
                ) from err
            warnings = stage_warnings(run / "logs" / f"{step.slug}.log")
            results.append(StepResult(step.name, "done", time.perf_counter() - started, warnings))
            bar.write(f"{prefix}  done in {results[-1].seconds:.1f}s", file=console)
            for warning in warnings:
                bar.write(f"      WARNING: {warning}", file=console)
            bar.update()
    return results


def reproduce(cfg: DictConfig) -> list[StepResult]:
    """Plan the grid, write commands.sh and grid.json, then (unless dry_run) run every selected step in order."""
    profile: ProfileConfig = OmegaConf.to_object(cfg.profile)
    run = Path(cfg.output_dir)
    builder = GridBuilder(profile, run, best_of_n=cfg.best_of_n, paper=cfg.paper)
    all_steps = builder.build()
    steps = select_steps(all_steps, cfg.only, cfg.skip)
    run.mkdir(parents=True, exist_ok=True)
    # commands.sh always holds the whole grid; a selection (only=/skip=) also gets its own script.
    script_path = run / ("commands.sh" if len(steps) == len(all_steps) else "commands_selected.sh")
    notes = plan_notes(all_steps, profile) if cfg.dry_run else []  # composes every config: seconds, dry runs only
    for path, listed in {run / "commands.sh": all_steps, script_path: steps}.items():
        atomic_write_text(path, render_script(listed, profile, notes))
        path.chmod(0o755)
    atomic_write_json(layout.grid_file(run), grid_summary(profile, builder.cells))
    atomic_write_text(run / "reproduce_config.yaml", OmegaConf.to_yaml(cfg))
    if cfg.dry_run:
        print(script_path.read_text(), end="")
        print(f"# {len(steps)} of {len(all_steps)} steps; written to {script_path}")
        return []

    check_inputs(steps, run)
    _environment(profile)
    started = time.perf_counter()
    with cpu_threads(profile.cpu_threads):
        results = run_steps(steps, profile, run, overwrite=cfg.overwrite, graph=all_steps)
    ran = sum(r.status == "done" for r in results)
    atomic_write_json(run / "last_run.json", [asdict(r) for r in results])
    warned = [r for r in results if r.warnings]
    print(f"reproduce {profile.name}: {ran} steps run, {len(results) - ran} skipped (already done) in "
          f"{time.perf_counter() - started:.0f}s; logs in {run / 'logs'}"
          + (f"; {len(warned)} steps WARNED: {', '.join(r.step for r in warned)}" if warned else ""))
    if any(step.script == "report" for step in steps):
        print((run / "tables.md").read_text())
        print(f"tables: {run / 'tables.md'}, {run / 'tables.tex'}; figures: {run}/*.png")
    return results
