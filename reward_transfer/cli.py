"""What every entry-point script does around its work: read `.env`, check the command line, report expected
failures as one line, and run in place with the same CPU-thread policy.

Hydra's own handling of a bad command line breaks the one-line promise: a key typo or an unknown config name
prints a multi-line block (no list of the names that exist), a missing `--config-name` raises a traceback, and
its hint `+key=value` adds a key the structured schema then silently ignores. `run_hydra_script` therefore
composes the command line itself first (Hydra's compose API: the same config the run will get) and refuses any
mistake in one line naming the key, the closest known key, or the available config names.
"""

import difflib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dotenv import find_dotenv, load_dotenv

from reward_transfer.errors import UserError, exit_on_user_error
from reward_transfer.stages import CONFIGS, get_stage

# Every stage runs in place: no per-run Hydra folders or .hydra copies (each writes its own config beside its
# results), and logs go to stdout.
RUN_IN_PLACE = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout")
CONFIG_NAME_FLAGS = ("--config-name", "-cn")
HELP_FLAGS = ("--help", "-h")


def set_thread_policy() -> None:
    """One policy for every entry point: an explicit OMP_NUM_THREADS wins, else torch uses one thread per core.

    Stages started by hand and stages inside `reproduce.py` then run with the same number of threads; a launcher
    that starts several processes (accelerate) sets OMP_NUM_THREADS itself.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextmanager
def entry_point() -> Iterator[None]:
    """Load HF_TOKEN / WANDB_API_KEY from `.env` (the environment wins), then run with `exit_on_user_error`."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    set_thread_policy()
    with exit_on_user_error():
        yield


def named_configs(script: str) -> list[str]:
    """The named configs a script can run (`configs/<script>/*.yaml`)."""
    return sorted(p.stem for p in (CONFIGS / script).glob("*.yaml"))


def _split_argv(script: str, argv: list[str], default: str | None) -> tuple[str | None, list[str], list[str]]:
    """(config name, overrides, other Hydra flags) of a command line."""
    config_name, overrides, flags = default, [], []
    items = iter(argv)
    for item in items:
        name, _, value = item.partition("=")
        if name in CONFIG_NAME_FLAGS:
            config_name = value if value else next(items, "")
        elif item.startswith("-"):
            flags.append(item)
        else:
            overrides.append(item)
    if config_name is not None:
        config_name = config_name.removesuffix(".yaml")
        if config_name not in named_configs(script) and not (CONFIGS / script / f"{config_name}.yaml").is_file():
            raise UserError(f"{script}: no config named '{config_name}' in configs/{script}/ (available: "
                            f"{', '.join(named_configs(script))})")
    return config_name, overrides, flags


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (for the closest-key hint)."""
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for key in node:
            name = f"{prefix}{key}"
            keys.append(name)
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                keys += _keys(child, f"{name}.")
    return keys


def _is_open(node: Any) -> bool:
    """A dict-typed field (e.g. `profile.models.sft`) takes new keys; a dataclass-typed one does not."""
    from omegaconf import DictConfig, OmegaConf

    return isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict


def _key_exists(cfg: Any, key: str, script: str) -> bool:
    """Whether `key` is in the config; a key the schema does not declare is refused, naming the closest one
    (a new key is allowed only inside a dict-typed field or a list)."""
    from omegaconf import DictConfig, ListConfig

    node = cfg
    for part in key.split("."):
        if isinstance(node, ListConfig):
            return True
        if not isinstance(node, DictConfig):
            return True
        if part not in node.keys():  # noqa: SIM118 (`in node` is False for a key whose value is MISSING)
            if _is_open(node):
                return False
            close = difflib.get_close_matches(key, _keys(cfg), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"{script}: unknown key '{key}'{hint}; `python {script}.py --help` lists the keys")
        node = node._get_node(part)
        if node is None or node._is_none() or node._is_missing():
            return True
    return True


def _check_group(script: str, override: Any) -> None:
    """A config-group choice (e.g. `profile=tny`) must name one of the group's files."""
    group = override.key_or_group.lstrip("+")
    value = override.value()
    options = sorted(p.stem for p in (CONFIGS / script / group).glob("*.yaml"))
    if isinstance(value, str) and value not in options:
        raise UserError(f"{script}: no {group} named '{value}' in configs/{script}/{group}/ (available: "
                        f"{', '.join(options)})")


def _one_line(err: BaseException) -> str:
    """Hydra/OmegaConf messages carry `full_key:`/`object_type=` blocks: keep the first sentence of the error
    and of its root cause (e.g. "Error merging override train.epochs=abc: Value 'abc' ... could not be converted")."""
    def first(e: BaseException) -> str:
        text = str(e).strip()
        return re.sub(r"\s+", " ", text.splitlines()[0]) if text else e.__class__.__name__

    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    return first(err) if root is err else f"{first(err)}: {first(root)}"


def check_command_line(script: str, argv: list[str], default: str | None) -> tuple[str, list[str]]:
    """Compose the config a command line asks for; refuse mistakes in one line. Returns (config name, overrides)
    with `+key=value` on a declared key rewritten as `key=value` (Hydra refuses to "add" an existing key)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    importlib.import_module(get_stage(script).schema)
    config_name, overrides, _ = _split_argv(script, argv, default)
    if config_name is None:
        raise UserError(f"{script}: choose a config with --config-name=NAME (available: "
                        f"{', '.join(named_configs(script))})")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # Hydra's OverrideParseException: a malformed `key=value`
        raise UserError(f"{script}: cannot read the override: {_one_line(err)}") from err
    groups = {p.name for p in (CONFIGS / script).iterdir() if p.is_dir()}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS / script), version_base="1.3"):
        chosen = [o for o in parsed if o.key_or_group.split("/")[0] in groups and not o.is_delete()]
        for override in chosen:
            if "/" not in override.key_or_group and "." not in override.key_or_group:
                _check_group(script, override)
        selections = [o.input_line for o in chosen]
        try:
            base = compose(config_name=config_name, overrides=[s.lstrip("+") for s in selections])
        except Exception as err:
            raise UserError(f"{script}: {_one_line(err)}") from err
        rewritten = []
        for override, line in zip(parsed, overrides, strict=True):
            key = override.key_or_group
            bare = line.lstrip("+")
            if key.split("/")[0] in groups or key.startswith("hydra"):
                rewritten.append(bare if override.is_add() else line)
            elif _key_exists(base, key, script):
                rewritten.append(bare)
            else:
                rewritten.append(f"+{bare}")  # a new entry of a dict-typed field
        try:
            compose(config_name=config_name, overrides=rewritten)
        except Exception as err:
            raise UserError(f"{script}: {_one_line(err)}") from err
    GlobalHydra.instance().clear()
    return config_name, rewritten


def describe(script: str, default: str | None, doc: str) -> str:
    """`--help`: what the script does, its named configs and its main keys with their defaults."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    importlib.import_module(get_stage(script).schema)
    names = named_configs(script)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS / script), version_base="1.3"):
        cfg = compose(config_name=default or "base")
    GlobalHydra.instance().clear()
    lines = [doc.strip(), "", f"usage: python {script}.py{'' if default else ' --config-name=NAME'} [key=value ...]",
             "", f"named configs (configs/{script}/): {', '.join(names)}", "",
             f"main keys (defaults of {default or 'base'}.yaml):"]
    values = OmegaConf.to_container(cfg, resolve=False)
    for key, value in values.items():
        if isinstance(value, dict) and value:
            inner = ", ".join(f"{k}.*" if isinstance(v, dict) and v else f"{k}={v!r}" for k, v in value.items())
            lines.append(f"  {key}: {inner}")
        else:
            lines.append(f"  {key}={value!r}")
    lines += ["", "A key not listed is refused. Hydra's own options: --hydra-help."]
    return "\n".join(lines)


def run_hydra_script(script: str, default: str | None = None, doc: str = "") -> None:
    """The body of a Hydra entry point: check the command line, then run the stage's function (`stages.STAGES`,
    imported only then: a mistake on the command line is told before torch is imported) through `hydra.main`."""
    import hydra

    argv = sys.argv[1:]
    if any(arg in HELP_FLAGS for arg in argv):
        with exit_on_user_error():
            print(describe(script, default, doc))
        return
    with exit_on_user_error():
        config_name, overrides = check_command_line(script, argv, default)
    _, _, flags = _split_argv(script, argv, default)
    given = {item.split("=", 1)[0].lstrip("+~") for item in overrides}
    in_place = [item for item in RUN_IN_PLACE if item.split("=", 1)[0] not in given]
    sys.argv = [sys.argv[0], f"--config-name={config_name}", *flags, *in_place, *overrides]

    @hydra.main(version_base="1.3", config_path=str(CONFIGS / script), config_name=None)
    def main(cfg: Any) -> None:
        with entry_point():
            get_stage(script).load()(cfg)

    main()
