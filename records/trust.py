"""The trust rule every reader of a store applies (docs/reliability.md, "How the promises are
kept"): which files are read at all, and which trial rows are believed.

- a Parquet footer claiming more metadata than the file or than MAX_FOOTER is refused before
  pyarrow allocates it (``footer_problem``);
- a column with an Arrow extension type is refused unread: some (Ray's
  ``ray.data.arrow_pickled_object``) unpickle their values when converted to Python;
- each trial row's settings hash to its trial_id, and a file of one row is named by it
  (``row_problem``): a hand-edited row, a copy under another name or a foreign table is skipped,
  and its trial counts as missing.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from trainer.config import TrainConfig

from .identity import RUNTIME_FIELDS, row_trial_id

__all__ = ["ForeignFileError", "row_problem", "footer_problem", "MAX_FOOTER", "has_extension",
           "damaged", "COMPACTED_PREFIX", "is_compacted"]

COMPACTED_PREFIX = "compacted-"
"""Files of many trials' rows (or curves): merged by ``compact``, or a pack's; the others are
named by their one trial_id."""

MAX_FOOTER = 64 << 20
"""Bytes of Parquet metadata a reader accepts (what the store writes is a few kB a file, about
16 MB for a 10,000-trial compacted file). pyarrow allocates and reads whatever length a
footer claims: a 2 GB sparse file claiming 2 GB cost every reader 2.4 GB."""


class ForeignFileError(ValueError):
    """A file in the store that diloco-sweep did not write (and will not convert)."""


def is_compacted(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def footer_problem(f: pa.NativeFile) -> str | None:
    """Why the Parquet footer of the open file ``f`` must not be read, or None: its last 8 bytes
    are the metadata's length (4 bytes, little-endian) and ``PAR1``; a length longer than the
    file or than MAX_FOOTER is refused. Anything else (no ``PAR1``: a cut-short file) is left
    to pyarrow, which refuses it cheaply."""
    size = f.size()
    if size < 12:
        return None
    tail = f.read_at(8, size - 8)
    if tail[4:] != b"PAR1":
        return None
    n = int.from_bytes(tail[:4], "little")
    if n > size - 12:
        return f"its Parquet footer claims {n} bytes of metadata, more than the file's {size}"
    if n > MAX_FOOTER:
        return (f"its Parquet footer claims {n} bytes of metadata, more than the "
                f"{MAX_FOOTER >> 20} MiB a results file may have; not read")
    return None


def has_extension(typ: pa.DataType) -> bool:
    if isinstance(typ, pa.BaseExtensionType):
        return True
    return any(has_extension(typ.field(i).type) for i in range(typ.num_fields))


def damaged(e: BaseException) -> bool:
    """A file that cannot be read as ours (skip it), not a store that cannot be reached."""
    if isinstance(e, (ForeignFileError, pa.ArrowInvalid, pa.ArrowTypeError,
                      pa.ArrowNotImplementedError)):
        return True
    text = str(e)
    return isinstance(e, OSError) and not isinstance(e, FileNotFoundError) \
        and "Parquet" in text and "AWS Error" not in text


def row_problem(table: pa.Table, path: str) -> str | None:
    """Why a file of ``trials/`` is not trustworthy, or None when it is.

    Each row's settings hash to its trial_id, and a file that holds one row is named
    ``<trial_id>.parquet`` (the store writes one file per trial; a merged table, such as a
    compacted file or docs/results/restart-toy's, holds many). A row edited by hand (another α,
    another loss, the id kept), a copy under another trial's name, or a foreign table fails
    it: the whole file is skipped, and its trials count as missing and run again."""
    settings = [k for k in TrainConfig.field_names() if k not in RUNTIME_FIELDS]
    if not any(k in table.column_names and table[k].null_count < len(table) for k in settings):
        return "not a diloco-sweep trial row: it has none of the settings columns"
    if "trial_id" not in table.column_names:
        return "it has no trial_id column"
    stem = path.rsplit("/", 1)[-1].removesuffix(".parquet")
    if table.num_rows == 1 and not is_compacted(path) and table["trial_id"][0].as_py() != stem:
        return f"its trial_id {table['trial_id'][0].as_py()!r} is not its file name {stem!r}"
    present = [k for k in TrainConfig.field_names() if k in table.column_names]
    ids = table["trial_id"].to_pylist()
    for i, row in enumerate(table.select(present).to_pylist()):
        tid, actual = ids[i], row_trial_id(row)
        if actual != tid:
            where = f"row {i}: " if table.num_rows > 1 else ""
            return (f"{where}its settings hash to {actual}, not to its trial_id {tid}: the row "
                    f"was edited or belongs to another configuration")
    return None


def held_ids(table: pa.Table) -> set[str]:
    """The trial_ids a table holds (a compacted file's, for leaving out its trials' own files)."""
    return set(pc.unique(table["trial_id"]).to_pylist()) if "trial_id" in table.column_names \
        else set()
