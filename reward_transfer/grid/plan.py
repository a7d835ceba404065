"""The study's grid as a graph of steps: a pure function of the profile and the run folder (no I/O).

generate → SFT → ground truth → merge → fine-tunes → cross-domain → Table 1 evaluations → active learning → best-of-n
→ report. Each step is one command of the project; `Step.needs` are the steps whose outputs it reads. Training
steps use the recipe of their role (configs/train_reward_model/{truth,finetune,cross,active_learning}.yaml) with
`domain=`; the stages whose configs are per domain (generation, SFT) use `profile.config_names`.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_transfer import run_layout as layout
from reward_transfer.benchmarks import PUBLISHED
from reward_transfer.errors import UserError
from reward_transfer.grid.profile import ProfileConfig
from reward_transfer.grid.step import Step
from reward_transfer.selection_strategies import STRATEGIES

TRAIN_ON = ("new", "all")
BASELINES = ("merge_sft",)
BENCHMARKS = tuple(PUBLISHED)


@dataclass
class Plan:
    """The steps in a valid order, and what each evaluation result is (grid.json; the report reads it)."""

    steps: list[Step]
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)

    def by_name(self) -> dict[str, Step]:
        return {step.name: step for step in self.steps}


def _null(value: int | None) -> str:
    return "null" if value is None else str(value)


def _datasets(path: str | Path, split: str) -> str:
    return f"dataset.datasets=[{{name_or_path:{path},split:{split}}}]"


class _Planner:
    """Adds the steps of one profile and run folder."""

    def __init__(self, profile: ProfileConfig, run: Path, best_of_n: bool, paper: bool):
        self.profile, self.run, self.with_best_of_n, self.paper = profile, Path(run), best_of_n, paper
        self.plan = Plan([])

    # -- helpers
    def _add(self, step: Step) -> Step:
        self.plan.steps.append(step)
        return step

    def _extra(self, kind: str) -> list[str]:
        return list(self.profile.overrides.get(kind, []))

    def _common(self, seed: int | None = None) -> list[str]:
        """What every Hydra step gets: the run folder (the layout of every default path) and the seed (the profile's
        unless the step belongs to an active-learning chain of its own seed)."""
        return [f"paths.root={self.run}", f"seed={self.profile.seed if seed is None else seed}"]

    def _named(self, stage_kind: str, domain: str) -> str:
        template = self.profile.config_names.get(stage_kind)
        if template is None:
            raise UserError(f"profile {self.profile.name}: config_names.{stage_kind} is not set")
        return template.replace("{domain}", domain)

    def _given(self, domain: str) -> str | None:
        return self.profile.pair_data.get(domain)

    def _data_needs(self, domain: str) -> list[str]:
        """The step that makes the domain's pair data ([] when the profile gives an existing dataset)."""
        return [] if self._given(domain) else [f"generate/{domain}"]

    def _setup_needs(self) -> list[str]:
        return ["setup/tiny_models"] if self.profile.tiny_models else []

    def _sft_needs(self, domain: str) -> list[str]:
        return [f"sft/{domain}"] if self.profile.sft.train else []

    def _pairs(self, domain: str, split: str) -> list[str]:
        """The override naming the domain's pairs, only when they are not the run folder's own (given ones)."""
        return [_datasets(self._given(domain), split)] if self._given(domain) else []

    def sft_model(self, domain: str) -> str:
        """The causal LM the domain's ground-truth RM starts from: SFT'd here, or the profile's."""
        if self.profile.sft.train:
            return str(layout.model_dir(self.run, layout.sft_name(domain)))
        return self.profile.models.sft[domain]

    # -- steps
    def tiny_models(self) -> None:
        out = self.profile.tiny_models
        self._add(Step("setup/tiny_models", "setup", "tiny", args={"out": out}, outputs=[str(Path(out) / "COMPLETE")]))

    def generate(self, domain: str) -> None:
        out = layout.data_dir(self.run, domain)
        share = [f"dataset.sft_share={self.profile.sft.share}"] if self.profile.sft.train and self.profile.sft.share \
            else []
        # The per-domain configs may name an output of their own: the grid's layout is said explicitly.
        self._add(Step(f"generate/{domain}", "generate", "generate_preference_data", self._named("generate", domain),
                       [f"output_dir={out}", *self._common(), *share, *self._extra("generate")],
                       outputs=[str(out / "dataset_dict.json"), str(out / "candidates")], needs=self._setup_needs()))

    def sft(self, domain: str) -> None:
        """SFT of the domain's base model on reference solutions of problems outside its reward-model share."""
        name = layout.sft_name(domain)
        out = layout.model_dir(self.run, name)
        exclude = [f"dataset.exclude=[{self._given(domain)}]"] if self._given(domain) else []
        overrides = [f"name={name}", f"model.model_name_or_path={self.profile.sft.base[domain]}", f"output_dir={out}",
                     *self._common(), *exclude, "train.resume=true", "overwrite=false", *self._extra("sft")]
        self._add(Step(f"sft/{domain}", "sft", "train_sft_model", self._named("sft", domain), overrides,
                       outputs=[str(out / "config.json"), str(out / "sft_problems.json")],
                       needs=[*self._data_needs(domain), *self._setup_needs()]))

    def train(self, recipe: str, group: str, name: str, domain: str, start: str, size: int | None,
              needs: list[str], data: list[str], extra: list[str] = (), seed: int | None = None) -> None:
        """A reward-model training of a role (recipe) on the domain's pairs (`data`: overrides naming other data)."""
        overrides = [f"domain={domain}", *extra, f"name={name}", f"model.model_name_or_path={start}", *data,
                     f"dataset.max_examples={_null(size)}", *self._common(seed),
                     "train.resume=true",  # re-running the grid continues an interrupted training from its checkpoint
                     "overwrite=false",  # the grid decides what is replaced (the AL recipes' own overwrite would not)
                     *self._extra(group)]
        out = layout.model_dir(self.run, name)
        self._add(Step(f"train/{name}", group, "train_reward_model", recipe, overrides,
                       outputs=[str(out / "log_history.json"), str(out / "train_config.yaml")],
                       needs=[*needs, *self._setup_needs()]))

    def merge(self, group: str, name: str, base: str, needs: list[str]) -> None:
        out = str(layout.merged_dir(self.run, name))
        self._add(Step(f"merge/{name}", group, "merge_peft_model",
                       args={"base_model": base, "model_name": str(layout.model_dir(self.run, name)), "output_dir": out},
                       outputs=[str(Path(out) / "config.json")], needs=[f"train/{name}", *needs]))

    def evaluate(self, group: str, name: str, domain: str, model: str, needs: list[str], cell: layout.Cell) -> None:
        out = layout.eval_dir(self.run, name)
        self.plan.cells[name] = {**dataclasses.asdict(cell), "mode": "pairs", "model": name,
                                 "results": str(out.relative_to(self.run) / "results.json")}
        overrides = [f"domain={domain}", f"name={name}", f"model.model_name_or_path={model}",
                     *self._pairs(domain, "eval"), f"dataset.max_examples={_null(self.profile.sizes.eval_max_examples)}",
                     *self._common(), *self._extra("eval")]
        self._add(Step(f"eval/{name}", group, "eval", "base", overrides, outputs=[str(out / "results.json")],
                       needs=[*needs, *self._data_needs(domain), *self._setup_needs()]))

    def best_of_n(self, name: str, domain: str, model: str, needs: list[str]) -> None:
        bon = layout.best_of_n_name(name)
        out = layout.eval_dir(self.run, bon)
        self.plan.cells[bon] = {**self.plan.cells[name], "mode": "best_of_n",
                                "results": str(out.relative_to(self.run) / "results.json")}
        overrides = ["mode=best_of_n", f"domain={domain}", f"name={bon}", f"model.model_name_or_path={model}",
                     *self._common(), *self._extra("best_of_n")]
        self._add(Step(f"best_of_n/{name}", "best_of_n", "eval", "base", overrides, outputs=[str(out / "results.json")],
                       needs=[*needs, *self._data_needs(domain), *self._setup_needs()]))

    def select(self, domain: str, strategy: str, round_index: int, model: str, needs: list[str],
               seed: int | None = None) -> str:
        al = self.profile.active_learning
        pool = (self._given(domain) or layout.data_dir(self.run, domain) if round_index == 1
                else layout.al_state_dir(self.run, domain, strategy, round_index - 1, seed))
        out = layout.al_state_dir(self.run, domain, strategy, round_index, seed)
        overrides = [
            f"domain={domain}", f"model.model_name_or_path={model}", f"dataset.dataset_name_or_path={pool}",
            f"dataset.output_dataset_name_or_path={out}", f"dataset.pairs_to_select={al.pairs_per_round}",
            f"dataset.max_to_look_at={_null(al.max_to_look_at)}", f"selection.strategy={strategy}",
            f"selection.train_on={al.train_on}",
            # The pool is the ground truth's training set (Table 1's full size), sampled as training samples it: with
            # the profile's seed, whatever the chain's.
            *([f"dataset.pool_size={_null(self.profile.sizes.full)}"] if round_index == 1 else []),
            *([f"dataset.pool_seed={self.profile.seed}"] if round_index == 1 and seed is not None else []),
            *self._common(seed), *self._extra("select"),
        ]
        name = f"select/{layout.active_learning_name(domain, strategy, round_index, seed)}"
        self._add(Step(name, "active_learning", "active_data_selection", "initial" if round_index == 1 else "base",
                       overrides, outputs=[str(out / "dataset_dict.json")], needs=[*needs, *self._setup_needs()]))
        return name

    # -- the grid
    def build(self) -> Plan:
        """generate → SFT → ground truth → fine-tunes → cross-domain → Table 1 evals → AL rounds → best-of-n → report."""
        profile, domains = self.profile, list(self.profile.domains)
        subsets = sorted(profile.sizes.subsets)
        al = profile.active_learning
        if profile.tiny_models:
            self.tiny_models()
        self._check(domains)
        for domain in domains:
            if not self._given(domain):
                self.generate(domain)
        for domain in domains:
            if profile.sft.train:
                self.sft(domain)
        for domain in domains:
            self.train("truth", "truth", layout.truth_name(domain), domain, self.sft_model(domain), profile.sizes.full,
                       [*self._data_needs(domain), *self._sft_needs(domain)], self._pairs(domain, "train"))
        for domain in domains:
            self.merge("truth", layout.truth_name(domain), self.sft_model(domain), self._sft_needs(domain))
        random_sizes = [k * al.pairs_per_round for k in range(1, al.rounds + 1)] if al.random_subsets else []
        finetune_sizes = sorted(set(subsets) | set(random_sizes))
        for domain in domains:
            for size in finetune_sizes:
                self.train("finetune", "finetune", layout.general_name(domain, size), domain, profile.models.general,
                           size, self._data_needs(domain), self._pairs(domain, "train"))
        # Every ordered pair of domains: the ground-truth RM of `source` fine-tuned on `domain`'s pairs.
        crosses = [(domain, source) for domain in domains for source in domains if source != domain]
        for domain, source in crosses:
            for size in subsets:
                self.train("cross", "cross", layout.cross_name(domain, source, size), domain,
                           str(layout.merged_dir(self.run, layout.truth_name(source))), size,
                           [*self._data_needs(domain), f"merge/{layout.truth_name(source)}"], self._pairs(domain, "train"),
                           extra=[f"source={source}"])
        self._table1_evals(domains, crosses, finetune_sizes)
        # With several seeds, best-of-n and the benchmarks use the first seed's last round (the chains' spread is
        # Table 2's); every seed's chain is evaluated on the domain's pairs.
        finals = {}
        for domain in domains:
            for strategy in al.strategies:
                chains = [self.active_learning_chain(domain, strategy, seed) for seed in (al.seeds or [None])]
                finals[(domain, strategy)] = chains[0]
        baselines = [self.merge_sft(domain, domains) for domain in domains if "merge_sft" in profile.baselines]
        if self.with_best_of_n:
            self._best_of_n(domains, crosses, subsets, finals)
        self._benchmarks(domains, finetune_sizes, finals, baselines)
        # The report reads every result: it comes last (whatever of the grid is there; a partial run gives "—").
        self._add(Step("report", "report", "report", positional=[str(self.run)],
                       args={"paper": True} if self.paper else {}, needs=[s.name for s in self.plan.steps], always=True))
        return self.plan

    def merge_sft(self, domain: str, domains: list[str]) -> str:
        """The DogeRM baseline of `domain`: the general RM's backbone moved toward its SFT model, evaluated on every
        domain (a row of Table 1 and of the transfer matrix)."""
        name = layout.merge_sft_name(domain)
        out = layout.model_dir(self.run, name)
        self._add(Step(f"baseline/{name}", "baselines", "interpolate_reward_model", "base",
                       [f"name={name}", f"domain={domain}", f"reward_model={self.profile.models.general}",
                        f"sft_model={self.sft_model(domain)}", f"output_dir={out}", *self._common(),
                        *self._extra("merge_sft")],
                       outputs=[str(out / "config.json")], needs=[*self._sft_needs(domain), *self._setup_needs()]))
        for target in domains:
            self.evaluate("baselines", layout.on_domain(name, domain, target), target, str(out), [f"baseline/{name}"],
                          layout.Cell(target, "merge_sft", size=0, source=domain))
        return name

    def _benchmarks(self, domains: list[str], sizes: list[int], finals: dict[tuple[str, str], str],
                    baselines: list[str]) -> None:
        """Each benchmark of the profile with every final model: the general RM, each domain's R_truth and largest
        fine-tune, the last round of each active-learning strategy, and the baselines."""
        general = [("general", self.profile.models.general, [])]
        models = [*general, *[(layout.truth_name(d), None, [f"train/{layout.truth_name(d)}"]) for d in domains]]
        if sizes:
            models += [(layout.general_name(d, max(sizes)), None, [f"train/{layout.general_name(d, max(sizes))}"])
                       for d in domains]
        models += [(name, None, [f"train/{name}"]) for name in finals.values()]
        models += [(name, None, [f"baseline/{name}"]) for name in baselines]
        for benchmark, spec in benchmark_sources(self.profile.benchmarks).items():
            for name, path, needs in models:
                result = layout.benchmark_name(name, benchmark)
                out = layout.eval_dir(self.run, result)
                self.plan.cells[result] = {"mode": benchmark, "model": name,
                                           "results": str(out.relative_to(self.run) / "results.json")}
                overrides = [f"mode={benchmark}", f"name={result}",
                             f"model.model_name_or_path={path or layout.model_dir(self.run, name)}",
                             _datasets(spec["name_or_path"], spec.get("split", "train")), *self._common(),
                             *self._extra("benchmark")]
                self._add(Step(f"benchmark/{result}", "benchmarks", "eval", "base", overrides,
                               outputs=[str(out / "results.json")], needs=[*needs, *self._setup_needs()]))

    def _check(self, domains: list[str]) -> None:
        from reward_transfer.domains import get_domain

        profile = self.profile
        for domain in domains:
            get_domain(domain, "profile.domains")
        source, key = (profile.sft.base, "sft.base") if profile.sft.train else (profile.models.sft, "models.sft")
        missing = [d for d in domains if d not in source]
        if missing:
            raise UserError(f"profile.{key}: no model for {', '.join(missing)} (set profile.{key}.{missing[0]}=<model>)")
        unknown = set(profile.pair_data) - set(domains)
        if unknown:
            raise UserError(f"profile.pair_data: {', '.join(sorted(unknown))} not in profile.domains "
                            f"({', '.join(domains)})")
        for key, kind, given, known in (("baselines", "baseline", profile.baselines, BASELINES),
                                        ("benchmarks", "benchmark", list(benchmark_sources(profile.benchmarks)),
                                         BENCHMARKS),
                                        ("active_learning.strategies", "strategy", profile.active_learning.strategies,
                                         STRATEGIES)):
            unknown = [name for name in given if name not in known]
            if unknown:  # refused before any step runs, not at the first selection hours into the grid
                raise UserError(f"profile.{key}: unknown {kind} '{unknown[0]}'; known: {', '.join(known)}")
        if profile.active_learning.train_on not in TRAIN_ON:
            raise UserError(f"profile.active_learning.train_on: '{profile.active_learning.train_on}' is not one of "
                            f"{', '.join(TRAIN_ON)}")
        seeds = list(profile.active_learning.seeds)
        if len(set(seeds)) != len(seeds) or any(not isinstance(seed, int) or seed < 0 for seed in seeds):
            raise UserError(f"profile.active_learning.seeds: {seeds} must be distinct non-negative integers")

    def _table1_evals(self, domains: list[str], crosses: list[tuple[str, str]], sizes: list[int]) -> None:
        Cell, general = layout.Cell, self.profile.models.general
        for domain in domains:
            truth = layout.truth_name(domain)
            self.evaluate("eval", truth, domain, str(layout.model_dir(self.run, truth)), [f"train/{truth}"],
                          Cell(domain, "truth"))
            self.evaluate("eval", layout.general_name(domain, 0), domain, general, [], Cell(domain, "finetune", size=0))
            for size in sizes:
                name = layout.general_name(domain, size)
                self.evaluate("eval", name, domain, str(layout.model_dir(self.run, name)), [f"train/{name}"],
                              Cell(domain, "finetune", size=size))
        for domain, source in crosses:
            source_truth = layout.truth_name(source)
            self.evaluate("eval", layout.cross_name(domain, source, 0), domain,
                          str(layout.merged_dir(self.run, source_truth)), [f"merge/{source_truth}"],
                          Cell(domain, "cross", size=0, source=source))
            for size in self.profile.sizes.subsets:
                name = layout.cross_name(domain, source, size)
                self.evaluate("eval", name, domain, str(layout.model_dir(self.run, name)), [f"train/{name}"],
                              Cell(domain, "cross", size=size, source=source))

    def active_learning_chain(self, domain: str, strategy: str, seed: int | None = None) -> str:
        """select → train → eval → merge per round, each round starting from the last one's merged model (with
        `train_on=all`: each round retrains the general RM on every pair selected so far, scored by the last
        round's model); `seed`: one of several seeds' chains. The one definition of the rounds: `reproduce.py` and
        `active_learning_loop.py` use it."""
        al, general = self.profile.active_learning, self.profile.models.general
        scorer, scorer_needs = general, []
        for k in range(1, al.rounds + 1):
            name = layout.active_learning_name(domain, strategy, k, seed)
            state = layout.al_state_dir(self.run, domain, strategy, k, seed)
            previous = [f"select/{layout.active_learning_name(domain, strategy, k - 1, seed)}"] if k > 1 else []
            select = self.select(domain, strategy, k, scorer, [*scorer_needs, *self._data_needs(domain), *previous],
                                 seed)
            start, start_needs = (general, []) if al.train_on == "all" else (scorer, scorer_needs)
            self.train("active_learning_initial" if k == 1 else "active_learning", "active_learning", name, domain,
                       start, None, [select, *start_needs], [_datasets(state, "train")], seed=seed)
            self.evaluate("active_learning", name, domain, str(layout.model_dir(self.run, name)), [f"train/{name}"],
                          layout.Cell(domain, "al", size=k * al.pairs_per_round, strategy=strategy, round_index=k,
                                      seed=seed))
            self.merge("active_learning", name, start, start_needs)
            scorer, scorer_needs = str(layout.merged_dir(self.run, name)), [f"merge/{name}"]
        return layout.active_learning_name(domain, strategy, al.rounds, seed)

    def _best_of_n(self, domains: list[str], crosses: list[tuple[str, str]], subsets: list[int],
                   finals: dict[tuple[str, str], str]) -> None:
        """Best-of-n with each final model: R_truth, the untouched and fully fine-tuned R_gen, the full
        cross-domain fine-tune and the last round of each active-learning strategy."""
        full = max(subsets) if subsets else None
        for domain in domains:
            if self._given(domain):
                continue  # an existing pair dataset has no candidates to rerank
            truth = layout.truth_name(domain)
            self.best_of_n(truth, domain, str(layout.model_dir(self.run, truth)), [f"train/{truth}"])
            self.best_of_n(layout.general_name(domain, 0), domain, self.profile.models.general, [])
            names = [layout.general_name(domain, full)] if full is not None else []
            names += [layout.cross_name(domain, source, full) for target, source in crosses
                      if target == domain and full is not None]
            names += [name for (target, _), name in finals.items() if target == domain]
            for name in names:
                self.best_of_n(name, domain, str(layout.model_dir(self.run, name)), [f"train/{name}"])


def benchmark_sources(given: list[Any]) -> dict[str, dict[str, Any]]:
    """`profile.benchmarks` as name → {name_or_path, split}: a bare name is its published dataset."""
    sources: dict[str, dict[str, Any]] = {}
    for entry in given:
        spec = dict(PUBLISHED.get(entry, {})) if isinstance(entry, str) else dict(entry)
        name = entry if isinstance(entry, str) else spec.pop("name", None)
        if not isinstance(entry, str) and (name is None or "name_or_path" not in spec):
            raise UserError(f"profile.benchmarks: {entry} must be a name ({', '.join(PUBLISHED)}) or "
                            "{name: …, name_or_path: <dataset or file>, split: …}")
        if name in sources:
            raise UserError(f"profile.benchmarks: '{name}' is given twice")
        sources[name] = spec
    return sources


def plan_grid(profile: ProfileConfig, run: str | Path, best_of_n: bool = True, paper: bool = False) -> Plan:
    """The ordered steps of the study for `profile`, writing into the run folder `run`."""
    return _Planner(profile, Path(run), best_of_n, paper).build()


def plan_from_config(cfg: Any) -> Plan:
    """The plan of a composed `reproduce.py` config (its profile, output_dir, best_of_n, paper)."""
    from omegaconf import OmegaConf

    return plan_grid(OmegaConf.to_object(cfg.profile), cfg.output_dir, best_of_n=cfg.best_of_n, paper=cfg.paper)


def plan_active_learning(profile: ProfileConfig, run: str | Path, domain: str, strategy: str) -> Plan:
    """The rounds of one domain and strategy alone (`active_learning_loop.py`), as the grid defines them."""
    planner = _Planner(profile, Path(run), best_of_n=False, paper=False)
    if profile.tiny_models:
        planner.tiny_models()
    planner.active_learning_chain(domain, strategy)
    return planner.plan


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
               "train_on": al.train_on, "seeds": list(al.seeds)},
        "results": cells,
    }
