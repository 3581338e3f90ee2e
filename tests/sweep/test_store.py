"""The journal survives a cut last line; tables round-trip as CSV and Parquet."""
import pytest

from dfx.sweep import Journal, read_table, write_table


def test_journal_reloads_and_skips_a_cut_line(tmp_path):
    j = Journal(tmp_path)
    j.add("perf", "a", {"status": "ok", "x": 1})
    j.add("perf", "b", {"status": "ok", "x": 2})
    j.close()
    with (tmp_path / "journal.jsonl").open("a") as fh:
        fh.write('{"kind": "perf", "key": "c", "res')              # interrupted mid-write
    j2 = Journal(tmp_path)
    assert j2.done("perf", "a") and j2.get("perf", "b")["x"] == 2 and not j2.done("perf", "c")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    rows = [{"config_hash": "ab", "d": 32, "latency_ms": 1.5, "reason": ""},
            {"config_hash": "cd", "d": None, "latency_ms": None, "reason": "perf: no"}]
    p = write_table(rows, tmp_path / f"t{suffix}")
    back = read_table(p)
    assert [r["config_hash"] for r in back] == ["ab", "cd"]
    if suffix == ".parquet":
        assert back[0]["latency_ms"] == 1.5 and back[1]["d"] is None
