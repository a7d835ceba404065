"""Tokenise once: the token ids of each conversation, kept on disk by content and reused by every step of a run.

The grid's training, evaluation and selection steps read the same conversations again and again (20k ⊂ 40k ⊂ 60k
pairs, one evaluation split scored by ~25 models, a pool scored every round), and rendering a chat template and
tokenising with InternLM2's SentencePiece tokenizer costs minutes per step while the GPU waits. A cache folder
holds the ids for one encoding: tokenizer (its vocabulary, added and special tokens, chat template), reward token
and length rule (`train:<max_length>` cuts answers, `score:<budget>` cuts prompts), and this module's
`ENCODING_VERSION`. Its shards are Arrow files keyed by a hash of (problem, answer), written atomically with
unique names, so concurrent steps and processes only ever add whole shards.
"""

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from reward_transfer.conversations import Problem, problem_key
from reward_transfer.storage import writer_is_alive

# Bump when the encoding protocol (conversations.py) changes what ids a conversation gets: old caches go unused.
ENCODING_VERSION = 1
FLUSH_EVERY = 4096  # conversations kept in memory before they are written out as a shard
SCHEMA = pa.schema([("key", pa.string()), ("input_ids", pa.list_(pa.int32())), ("flag", pa.int8())])


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides the ids a tokenizer gives a text: its class, vocabulary, added and special tokens, template."""
    digest = hashlib.sha256()
    for part in (type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()),
                 sorted((str(k), str(v)) for k, v in tokenizer.added_tokens_decoder.items()),
                 tokenizer.all_special_tokens, getattr(tokenizer, "chat_template", None)):
        digest.update(json.dumps(part, default=str).encode())
    return digest.hexdigest()


def conversation_key(problem: Problem, answer: str) -> str:
    return hashlib.blake2b(json.dumps([problem_key(problem), answer]).encode(), digest_size=16).hexdigest()


class TokenCache:
    """Ids (and a flag: how the length rule cut them) of conversations under one encoding; `root` None: no cache."""

    def __init__(self, root: str | Path | None, tokenizer: Any, reward_token_id: int | None, rule: str):
        self.folder = None
        if root is not None:
            encoding = json.dumps([ENCODING_VERSION, tokenizer_fingerprint(tokenizer), reward_token_id, rule])
            self.folder = Path(root).expanduser() / hashlib.sha256(encoding.encode()).hexdigest()[:24]
        self.tables: list[pa.Table] = []
        self.index: dict[str, tuple[int, int]] = {}
        self.new: dict[str, tuple[list[int], int]] = {}
        self.hits = self.misses = 0
        if self.folder is not None and self.folder.is_dir():
            _remove_dead_writers_files(self.folder)
            for shard in sorted(self.folder.glob("*.arrow")):
                self._add(shard)

    def _add(self, shard: Path) -> None:
        table = pa.ipc.open_file(pa.memory_map(str(shard))).read_all()
        for row, key in enumerate(table.column("key").to_pylist()):
            self.index[key] = (len(self.tables), row)
        self.tables.append(table)

    def get(self, problem: Problem, answer: str, encode: Callable[[], tuple[list[int], int]]) -> tuple[list[int], int]:
        """The conversation's (ids, flag): from the cache, else from `encode()` (kept for `save`)."""
        key = conversation_key(problem, answer)
        if key in self.new:
            return self.new[key]
        where = self.index.get(key)
        if where is not None:
            self.hits += 1
            table, row = self.tables[where[0]], where[1]
            return table.column("input_ids")[row].as_py(), table.column("flag")[row].as_py()
        self.misses += 1
        value = self.new[key] = encode()
        if len(self.new) >= FLUSH_EVERY:
            self.save()
        return value

    def save(self) -> None:
        """Write what was encoded and not yet written as one new shard (atomically; a unique name per writer)."""
        if self.folder is None:
            self.new.clear()  # no cache: nothing is kept beyond the call that encoded it
            return
        if not self.new:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = list(self.new)
        table = pa.table({"key": keys, "input_ids": [self.new[k][0] for k in keys],
                          "flag": [self.new[k][1] for k in keys]}, schema=SCHEMA)
        name = f"{uuid.uuid4().hex}.arrow"
        partial = self.folder / f".{name}~{socket.gethostname()}~{os.getpid()}.partial"
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            writer.write_table(table)
        os.replace(partial, self.folder / name)
        self.new.clear()
        self._add(self.folder / name)


def _remove_dead_writers_files(folder: Path) -> None:
    """Shards cut short by a kill (`.<name>~<host>~<pid>.partial` of a process of this host that is gone)."""
    for partial in folder.glob(".*.partial"):
        parts = partial.name.removesuffix(".partial").split("~")  # [".<name>", host, pid]
        # Many writers share the cache: another host's partial may be alive, only this host's dead ones go.
        if len(parts) == 3 and parts[2].isdigit() and writer_is_alive(int(parts[2]), parts[1]) is False:
            partial.unlink(missing_ok=True)
