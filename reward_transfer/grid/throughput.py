"""A device's throughput table (`benchmarks/throughput/<device>.json`): tokens/s of training and scoring, vLLM's
generation rate, load and merge times, token counts per pair and disk sizes, each with its source: measured on
(device, date, versions) by `make gpu-bench`, or estimated with its basis until then."""

import json
from pathlib import Path
from typing import Any

from reward_transfer.errors import UserError

THROUGHPUT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput"
CHARS_PER_TOKEN = 3.5  # English, LaTeX and Python under a ~90k-token vocabulary (the run's own data is read so)


class Throughput:
    """A device's table: every figure a value with its unit and its source (measured on…, or estimated from…)."""

    def __init__(self, device: str, table: dict[str, Any]):
        self.device, self.table = device, table
        self.entries = {**table["figures"], **table["tokens"], "disk_gb": table["disk_gb"],
                        "memory_gib": table["memory_gib"], "model_shape": table["model_shape"]}
        for name, entry in self.entries.items():
            _check_entry(device, name, entry)

    def __call__(self, name: str, domain: str | None = None) -> Any:
        value = self.entries[name]["value"]
        if domain is None or not isinstance(value, dict):
            return value
        if domain not in value:
            raise UserError(f"benchmarks/throughput/{self.device}.json: {name} has no figure for domain '{domain}'")
        return value[domain]

    def estimated(self) -> list[str]:
        return [name for name, entry in self.entries.items() if entry["source"] == "estimated"]


def _check_entry(device: str, name: str, entry: Any) -> None:
    where = f"benchmarks/throughput/{device}.json: {name}"
    if not isinstance(entry, dict) or "value" not in entry:
        raise UserError(f"{where}: needs a value")
    if entry.get("source") == "estimated" and not entry.get("basis"):
        raise UserError(f"{where}: an estimated figure needs its basis")
    if entry.get("source") == "measured" and not all(entry.get("measured_on", {}).get(k) for k in
                                                     ("device", "date", "versions")):
        raise UserError(f"{where}: a measured figure needs measured_on: device, date and versions")
    if entry.get("source") not in ("estimated", "measured"):
        raise UserError(f"{where}: source must be 'measured' or 'estimated'")


def load_throughput(device: str) -> Throughput:
    path = THROUGHPUT_DIR / f"{device}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in THROUGHPUT_DIR.glob("*.json")))
        raise UserError(f"profile.device: no throughput table for '{device}' (known: {known}); `make gpu-bench` "
                        "on that device writes one")
    return Throughput(device, json.loads(path.read_text()))
