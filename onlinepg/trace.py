"""Parquet traces written as the run goes: one complete file ("part") per flush.

A part is written to a temporary name and renamed into place, so a run killed at any moment — SIGKILL
included — leaves only complete, readable parts.

Parts are named ``part-<segment>-<seq>.parquet``: ``segment`` is the checkpoint round the rows follow (every
checkpoint flushes every table, so no part straddles one) and ``seq`` counts the parts of that segment. Within
a segment a table is flushed whenever its buffer passes ``FLUSH_BYTES``, so memory stays bounded whatever the
evaluation and checkpoint schedule. A resumed run deletes the parts of segments at or after its checkpoint
and writes them again; the concatenated rows are identical for any chunk size, flush size or resume point
(only the split into files may differ). Older runs wrote one ``part-<segment>.parquet`` per segment; both
names read and truncate the same way.
"""
import json
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .outdir import makedirs, record

FLUSH_BYTES = 32 * 2**20        # buffered bytes per table before a part is written (bounded memory)


class PartWriter:
    """Buffers column arrays for one table (e.g. ``rounds``) and writes them as one Parquet part per flush.

    ``schema`` maps column name → numpy dtype; ``metadata`` (dict of str) is stored in every file footer.
    Every part is listed in the folder's manifest before it is written, with its row count and ``config_hash``
    (``outdir.record``), and every part removed is listed as removed: ``--resume`` checks the parts against it.
    """

    def __init__(self, folder, schema, metadata, flush_bytes=None, config_hash=None):
        self.folder = makedirs(folder)
        self.config_hash = config_hash
        self.schema = schema
        self.metadata = {k.encode(): v.encode() for k, v in metadata.items()}
        self.flush_bytes = FLUSH_BYTES if flush_bytes is None else flush_bytes
        self._chunks = []
        self._bytes = 0
        self.segment = 0
        self._seq = 0

    def start_segment(self, round_):
        """The rows appended from now on follow the checkpoint at ``round_``."""
        self.segment, self._seq = round_, 0

    def append(self, columns):
        """Add rows: ``columns`` maps every schema column to an equal-length array. Writes a part once the
        buffer holds ``flush_bytes``."""
        n = len(next(iter(columns.values())))
        if n:
            chunk = {name: np.asarray(columns[name], dtype=dt) for name, dt in self.schema.items()}
            self._chunks.append(chunk)
            self._bytes += sum(a.nbytes for a in chunk.values())
            if self._bytes >= self.flush_bytes:
                self.flush()

    def flush(self):
        """Write the buffered rows as the segment's next part (nothing if empty)."""
        if not self._chunks:
            return
        cols = {name: np.concatenate([c[name] for c in self._chunks]) for name in self.schema}
        self._chunks, self._bytes = [], 0
        table = pa.table(cols).replace_schema_metadata(self.metadata)
        final = self.folder / f"part-{self.segment:012d}-{self._seq:06d}.parquet"
        tmp = self.folder / f".{final.name}.tmp"
        record(final, rows=table.num_rows, config=self.config_hash)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        self._seq += 1

    def truncate_from(self, part_round):
        """Delete the parts of segments at or after ``part_round`` and stray temporaries (used by resume)."""
        for path in self.folder.glob("*.parquet*"):
            if path.name.startswith("."):
                path.unlink()
            elif part_key(path)[0] >= part_round:
                record(path, removed=True)
                path.unlink()


def part_key(path):
    """(segment, seq) of ``part-<segment>[-<seq>].parquet``."""
    fields = path.name.split(".", 1)[0].split("-")
    return int(fields[1]), (int(fields[2]) if len(fields) > 2 else 0)


def run_metadata(config_toml, seed):
    return {"onlinepg.config": config_toml, "onlinepg.version": __version__, "onlinepg.seed": str(seed)}


def read_table(folder):
    """All parts of a trace folder as one pyarrow Table (rows in round order)."""
    parts = sorted(pathlib.Path(folder).glob("part-*.parquet"), key=part_key)
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p) for p in parts])


def file_metadata(path):
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def write_json(path, obj):
    """``obj`` as indented JSON, written atomically (see ``outdir.write_text``)."""
    from .outdir import write_text
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
