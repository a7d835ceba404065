"""The output directory of a generation run: committed batches, the manifest that guards resumption, and the
final DatasetDict, each written atomically so a `kill -9` at any moment leaves a resumable state."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from datasets import Dataset, DatasetDict

from reward_transfer.errors import UserError
from reward_transfer.generation.problems import quiet_datasets
from reward_transfer.rerun import describe_differences
from reward_transfer.storage import (
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    replace_dir,
    save_dataset_atomically,
)

MANIFEST = "generation_manifest.json"
CONFIG_COPY = "generation_config.yaml"
# The reward-model share of the domain's problems (every problem this run could pair); SFT never sees one of them.
PARTITION = "problem_partition.json"
# Everything this stage writes into output_dir; `overwrite=true` removes exactly these.
OWNED = ("dataset_dict.json", "train", "eval", "candidates", ".work", MANIFEST, CONFIG_COPY, PARTITION)


class OutputStore:
    """Reads and writes one generation output directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.shards = self.path / ".work" / "shards"

    def read_manifest(self) -> dict | None:
        manifest = self.path / MANIFEST
        return json.loads(manifest.read_text(encoding="utf-8")) if manifest.exists() else None

    def prepare(self, config: dict, input_fingerprint: str, overwrite: bool) -> str:
        """"complete", "resume" or "new"; refuses to resume a run made with other settings or inputs."""
        if overwrite:
            self.clear()
            return "new"
        manifest = self.read_manifest()
        if manifest is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise UserError(
                    f"output_dir {self.path} is not empty and holds no {MANIFEST} from an earlier generation run; "
                    "choose another output_dir or set overwrite=true"
                )
            return "new"
        differences = describe_differences(manifest["config"], config)
        if differences:
            raise UserError(
                f"generate_preference_data: output_dir {self.path} holds a run made with other settings "
                f"({differences}); rerun with the same settings, set overwrite=true to replace it, or choose "
                "another output_dir"
            )
        if manifest["input_fingerprint"] != input_fingerprint:
            raise UserError(
                f"output_dir {self.path} was generated from different input data (fingerprint "
                f"{manifest['input_fingerprint']}, now {input_fingerprint}); restore the inputs, set "
                "overwrite=true to start over, or choose another output_dir"
            )
        return "complete" if manifest.get("complete") else "resume"

    def clear(self) -> None:
        for name in OWNED:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def start(self, config: dict, config_yaml: str, input_fingerprint: str) -> None:
        """Record the settings a run was started with (before the first batch is committed)."""
        if self.read_manifest() is None:
            atomic_write_text(self.path / CONFIG_COPY, config_yaml)
            atomic_write_json(self.path / MANIFEST, {"config": config, "input_fingerprint": input_fingerprint,
                                                     "complete": False})

    def committed_problem_ids(self) -> set[str]:
        return {pid for done in sorted(self.shards.glob("shard-*.done.json"))
                for pid in json.loads(done.read_text(encoding="utf-8"))}

    def commit(self, problem_ids: list[str], candidates: list[dict]) -> None:
        """Write one batch: its candidates, then the small `.done` file whose appearance commits it.

        Both are written-then-renamed; a kill before the `.done` rename leaves an uncommitted shard that the
        resumed run regenerates and overwrites.
        """
        number = len(list(self.shards.glob("shard-*.done.json")))
        lines = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in candidates)
        atomic_write_text(self.shards / f"shard-{number:06d}.jsonl", lines)
        atomic_write_json(self.shards / f"shard-{number:06d}.done.json", problem_ids)

    def candidates(self) -> Iterator[dict]:
        """Every committed candidate (in no particular order)."""
        for done in sorted(self.shards.glob("shard-*.done.json")):
            with done.with_name(done.name.replace(".done.json", ".jsonl")).open(encoding="utf-8") as handle:
                for line in handle:
                    yield json.loads(line)

    def publish(self, pairs: DatasetDict, candidates: Dataset, summary: dict, partition: dict) -> None:
        """Write the partition, candidates and pairs; `dataset_dict.json` goes last, then the manifest says complete."""
        (self.path / "dataset_dict.json").unlink(missing_ok=True)  # left by a publish that was cut short
        self._remove_debris()
        staging = self.path / ".work" / "final"
        if staging.exists():
            shutil.rmtree(staging)
        atomic_write_json(self.path / PARTITION, partition)
        with quiet_datasets():
            save_dataset_atomically(candidates, self.path / "candidates")
            # An empty split needs one explicit (empty) shard: with none, load_from_disk fails on it.
            pairs.save_to_disk(str(staging), num_shards={split: 1 for split in pairs if len(pairs[split]) == 0})
        for split in pairs:
            replace_dir(staging / split, self.path / split)
        (staging / "dataset_dict.json").replace(self.path / "dataset_dict.json")
        manifest = self.read_manifest()
        atomic_write_json(self.path / MANIFEST, {**manifest, "complete": True, "summary": summary})
        shutil.rmtree(self.path / ".work")

    def remove_leftovers(self) -> None:
        """A complete run's work folder and temporary files: what a kill between the manifest's "complete" and the
        cleanup left (called whenever a run is found complete)."""
        work = self.path / ".work"
        if work.is_dir():
            print(f"generate_preference_data: removing {work}, left by a run killed after it finished", flush=True)
            shutil.rmtree(work)
        self._remove_debris()

    def _remove_debris(self) -> None:
        """Temporary files and directories of atomic writes that a kill interrupted."""
        remove_stale_temporaries(self.path)
