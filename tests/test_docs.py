"""What the documentation states about the environment matches what the project pins."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "auto_gpu.md", *sorted((REPO / "docs").glob("*.md"))]


def _pin(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def test_every_installed_transformers_version_the_docs_name_is_the_pin() -> None:
    """A version written without a comparison (`transformers 5.23`) claims what is installed; ranges
    (`≥ 5.21`, `<5.21`) and major versions (`transformers 4` remote code) describe other things."""
    pin = _pin("transformers")
    mentions = [(doc.name, match[1]) for doc in DOCS
                for match in re.finditer(r"transformers (\d+\.\d+(?:\.\d+)?)", doc.read_text())]
    assert mentions, "no doc names the installed transformers"
    wrong = [(name, version) for name, version in mentions if not pin.startswith(version)]
    assert not wrong, f"docs name transformers versions other than the pin {pin}: {wrong}"
