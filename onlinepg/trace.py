"""Parquet traces written as the run goes: one complete file ("part") per flush.

A part is written to a temporary name and renamed into place, so a run killed at any moment — SIGKILL
included — leaves only complete, readable parts. Parts are named by the first round they cover; a resumed
run deletes the parts at or after its checkpoint and writes them again, identically.
"""
import json
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__


class PartWriter:
    """Buffers column arrays for one table (e.g. ``rounds``) and writes them as one Parquet part per flush.

    ``schema`` maps column name → numpy dtype; ``metadata`` (dict of str) is stored in every file footer.
    """

    def __init__(self, folder, schema, metadata):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.metadata = {k.encode(): v.encode() for k, v in metadata.items()}
        self._chunks = []

    def append(self, columns):
        """Add rows: ``columns`` maps every schema column to an equal-length array."""
        n = len(next(iter(columns.values())))
        if n:
            self._chunks.append({name: np.asarray(columns[name], dtype=dt) for name, dt in self.schema.items()})

    def flush(self, part_round):
        """Write the buffered rows as ``part-<part_round>.parquet`` (nothing if empty)."""
        if not self._chunks:
            return
        cols = {name: np.concatenate([c[name] for c in self._chunks]) for name in self.schema}
        table = pa.table(cols).replace_schema_metadata(self.metadata)
        final = self.folder / f"part-{part_round:012d}.parquet"
        tmp = self.folder / f".{final.name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        self._chunks = []

    def truncate_from(self, part_round):
        """Delete parts starting at or after ``part_round`` and stray temporaries (used by resume)."""
        for path in self.folder.glob("*.parquet*"):
            if path.name.startswith(".") or _part_round(path) >= part_round:
                path.unlink()


def _part_round(path):
    return int(path.name.split("-", 1)[1].split(".", 1)[0])


def run_metadata(config_toml, seed):
    return {"onlinepg.config": config_toml, "onlinepg.version": __version__, "onlinepg.seed": str(seed)}


def read_table(folder):
    """All parts of a trace folder as one pyarrow Table (rows in round order)."""
    parts = sorted(pathlib.Path(folder).glob("part-*.parquet"))
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p) for p in parts])


def file_metadata(path):
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def write_json(path, obj):
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
