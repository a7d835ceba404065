"""Atomic writes leave no debris: what a killed writer left beside a path is removed by the next writer of that path
(or the stage that finds it complete); a live writer's temporaries, and unrelated hidden folders, are kept."""

import os
import subprocess
import sys

from reward_transfer import storage


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_the_temporaries_of_gone_writers_of_that_path_are_removed(tmp_path):
    host = storage._HOST
    dead, alive = _dead_pid(), os.getpid()
    debris = [tmp_path / f".model.tmp-{dead}-x1y2@{host}", tmp_path / f".model.old-{dead}-0@{host}",
              tmp_path / f".model.tmp-{alive}-z9@other-node.cluster"]  # another host: one writer per output
    kept = [tmp_path / f".model.tmp-{alive}-ab12@{host}",  # a live writer of this host
            tmp_path / f".other.tmp-{dead}-cd34@{host}",  # another path's
            tmp_path / ".model.checkpoints", tmp_path / "model"]
    for path in debris[:2] + kept[:1] + kept[2:]:
        path.mkdir()
        (path / "weights.bin").write_bytes(b"0" * 10)
    for path in (debris[2], kept[1]):
        path.write_text("half")
    assert storage.remove_stale_temporaries_of(tmp_path / "model") == 3
    assert [p for p in debris if p.exists()] == [] and all(p.exists() for p in kept)


def test_an_atomic_write_names_its_temporary_so_that_a_later_writer_can_clear_it(tmp_path, monkeypatch):
    seen = []
    real = storage.replace_dir
    monkeypatch.setattr(storage, "replace_dir", lambda src, dst: seen.append(src.name) or real(src, dst))
    with storage.atomic_directory(tmp_path / "state") as tmp:
        (tmp / "info.json").write_text("{}")
    assert storage._TEMPORARY.fullmatch(seen[0])["name"] == "state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
