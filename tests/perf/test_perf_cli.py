"""`dfx perf` (dfx.perf.cli): a program file, the DFX table, JSON, plots, calibration records, overlap auto
and matrix-matrix prefill, and one-line errors."""
import json

from click.testing import CliRunner
from perf_programs import SMALL, shapes

from dfx.config import load_config
from dfx.perf import isolated_cycles
from dfx.perf.cli import perf as perf_cmd
from dfx.program import save_program


def test_cli(tmp_path):
    path = save_program(shapes(SMALL, "tiny", devices=4, max_seq=48), tmp_path / "small.dfx")
    runner = CliRunner()
    res = runner.invoke(perf_cmd, [str(path), "--input-tokens", "8", "--output-tokens", "4", "--table",
                                   "--json", str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert "decode: 4 steps" in res.output and "| 32 | 16 |" in res.output
    assert "| 128 | 256 | - | needs 383 positions, the program has 48 |" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["input_tokens"] == 8 and len(data["dfx_workloads"]) == 9
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"breakdown.png", "layers.png", "roofline.png"}
    for args, msg in ([["no-such-model"], "neither a checkpoint directory"],
                      [[str(path), "--devices", "2"], "compiled for 4 device(s)"],
                      [[str(path), "--set", "hbm.efficiency=2"], "hbm.efficiency must be in"],
                      [[str(path), "--output-tokens", "0"], "--output-tokens must be"]):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
    calib = tmp_path / "rtl.json"
    calib.write_text(json.dumps([{"asm": "VADD dst=1 a=2 b=3 n=8", "cycles": 14}]))
    res = runner.invoke(perf_cmd, ["--rtl-cycles", str(calib), "--config", "tiny", "--engines", "pipelined"])
    assert res.exit_code == 0 and "1.00" in res.output
    res = runner.invoke(perf_cmd, ["--rtl-cycles", str(calib), "--config", "tiny"])     # the RTL's engines
    want = isolated_cycles("VADD dst=1 a=2 b=3 n=8", load_config("tiny"))["total"]
    assert res.exit_code == 0 and f" {want} " in res.output and f"{14 / want:.2f}" in res.output
    res = runner.invoke(perf_cmd, ["--engines", "fast"])
    assert res.exit_code == 2 and "--engines" in res.output


def test_cli_overlap_auto_and_prefill_batch(tmp_path):
    runner = CliRunner()
    for args, msg in ((["124M", "--overlap", "fast"], "--overlap fast: expected auto or a segment count >= 1"),
                      (["124M", "--overlap", "0"], "--overlap 0: expected auto or a segment count >= 1"),
                      (["124M", "--prefill-batch", "0"], "--prefill-batch must be an integer >= 1"),
                      (["124M", "--prefill-batch", "x"], "--prefill-batch must be an integer >= 1")):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output and res.output.count("\n") == 1, (args, res.output)
    path = save_program(shapes(SMALL, "tiny", devices=2, max_seq=48, prefill_batch=4), tmp_path / "b.dfx")
    res = runner.invoke(perf_cmd, [str(path), "--input-tokens", "10", "--output-tokens", "2", "--json",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "prefill: 3 steps (matrix-matrix, up to 4 tokens each)" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["prefill_batch"] == 4 and data["phases"]["prefill"]["tokens"] == 9
    for args, msg in (([str(path), "--prefill-batch", "3"], "compiled with --prefill-batch 4, not --prefill-batch 3"),
                      ([str(path), "--overlap", "auto"], "compiled with overlap 1, not --overlap auto")):
        res = runner.invoke(perf_cmd, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
    res = runner.invoke(perf_cmd, ["124M", "--devices", "2", "--overlap", "auto", "--prefill-batch", "4",
                                   "--input-tokens", "9", "--output-tokens", "2"])      # the compile path
    assert res.exit_code == 0 and "prefill: 2 steps (matrix-matrix, up to 4 tokens each)" in res.output, res.output
    res = runner.invoke(perf_cmd, ["124M", "--devices", "1", "--prefill-batch", "1000"])
    assert res.exit_code == 2 and "the largest chunk that fits is" in res.output and res.output.count("\n") == 1


def test_cli_batched_instructions_in_the_wrong_stream(tmp_path):
    """Issue 21: CHUNK/SLOT in a token-serial stream, or a batched stream without CHUNK, is one error line (exit
    2), not a traceback. The programs are a compiled one with its streams edited (and saved again)."""
    runner = CliRunner()

    def edited(edit):
        prog = shapes(SMALL, "tiny", devices=1, max_seq=48, prefill_batch=4)
        edit(prog.devices[0].streams)
        return save_program(prog, tmp_path / "bad.dfx")

    def serial_chunk(st):
        st["prefill"] = list(st["prefill_batch"])

    def no_chunk(st):
        st["prefill_batch"] = [i for i in st["prefill_batch"] if i.op.mnemonic != "CHUNK"]

    for edit, msg in ((serial_chunk, "'prefill' stream uses CHUNK, SLOT or BATCH +dyn_m"),
                      (no_chunk, "'prefill_batch' stream uses SLOT or BATCH +dyn_m without a CHUNK")):
        res = runner.invoke(perf_cmd, [str(edited(edit)), "--input-tokens", "4", "--output-tokens", "2"])
        assert res.exit_code == 2 and msg in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
