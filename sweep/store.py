"""Where a sweep keeps what it has computed: an append-only journal (JSON lines, one record per finished task,
flushed as it lands, so an interrupted sweep loses nothing it finished) and the results table written from it
(Parquet with pyarrow, else CSV), each row carrying its config hash and the git revision.

Journal records: {"kind": "point" | "accuracy" | "yosys" | "rtl", "key": ..., "result": {...}}. A rerun reads
the journal first and submits only the keys it lacks (`Journal.done`).
"""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path


class Journal:
    """The records of one sweep's output folder (journal.jsonl)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "journal.jsonl"
        self.records: dict[tuple[str, str], dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:          # a line cut by an interruption: that task runs again
                    continue
                self.records[(rec["kind"], rec["key"])] = rec["result"]
        self._fh = None

    def done(self, kind: str, key: str) -> bool:
        return (kind, key) in self.records

    def get(self, kind: str, key: str) -> dict | None:
        return self.records.get((kind, key))

    def add(self, kind: str, key: str, result: dict):
        self.records[(kind, key)] = result
        if self._fh is None:
            self._fh = self.path.open("a")
        self._fh.write(json.dumps({"kind": kind, "key": key, "result": result}, default=_plain) + "\n")
        self._fh.flush()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _plain(v):
    """JSON for numpy scalars."""
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def git_revision(where: str | Path = ".") -> str:
    """The checkout's commit (with "-dirty" when files differ from it), or "unknown" outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def write_table(rows: list[dict], path: Path) -> Path:
    """Rows to Parquet (`path` ending .parquet, with pyarrow) or CSV; returns the file written (a .csv beside
    a .parquet path when pyarrow is missing)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa  # lazy: optional (the `sweep` extra)
            import pyarrow.parquet as pq
        except ImportError:
            path = path.with_suffix(".csv")
        else:
            data = {c: [_cell(r.get(c)) for r in rows] for c in cols}
            pq.write_table(pa.table(data), path)
            return path
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in cols})
    return path


def _cell(v):
    """Parquet columns need one type: ints that sit in a float column stay numbers, None stays null."""
    return v.item() if hasattr(v, "item") else v


def read_table(path: Path) -> list[dict]:
    """The rows of a table written by `write_table` (Parquet or CSV; CSV cells come back as strings)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # lazy: optional (the `sweep` extra)
        return pq.read_table(path).to_pylist()
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))
