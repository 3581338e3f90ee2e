"""`dfx sweep` from the command line: a grid through the plain loop writes the table, the Pareto plots and the
markdown report with a front table; bad input is one error line and exit 2."""
from click.testing import CliRunner

from dfx.cli import main
from dfx.sweep import read_table


def test_grid_sweep_writes_table_plots_and_report(tmp_path):
    out, pub, doc = tmp_path / "out", tmp_path / "pub", tmp_path / "dse.md"
    r = CliRunner().invoke(main, ["sweep", "--grid", "model=124M", "devices=1", "d=32,64", "l=8,16",
                                  "vpu_width=32", "input_tokens=8", "output_tokens=4", "--engine", "loop",
                                  "--quiet", "--out", str(out), "--publish", str(pub), "--doc", str(doc)])
    assert r.exit_code == 0, r.output
    rows = read_table(pub / "results.parquet")
    assert len(rows) == 4 and all(x["status"] == "ok" for x in rows)
    assert (pub / "pareto_lut.png").stat().st_size > 5000 and (pub / "pareto_dsp.png").exists()
    text = doc.read_text()
    assert "## Pareto fronts" in text and "### 124M on 1 card: latency vs LUTs" in text
    assert "![pareto_lut](pub/pareto_lut.png)" in text
    # the d=64, l=16 point is the fastest: it closes every latency front
    table = text.split("### 124M on 1 card: latency vs LUTs")[1].split("###")[0]
    assert table.strip().splitlines()[-1].startswith("| 64 | 16 |")
    again = CliRunner().invoke(main, ["sweep", "--grid", "model=124M", "devices=1", "d=32,64", "l=8,16",
                                      "vpu_width=32", "input_tokens=8", "output_tokens=4", "--engine", "loop",
                                      "--quiet", "--out", str(out), "--no-plots"])
    assert again.exit_code == 0 and "0 tasks computed, 8 from the journal" in again.output


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, words in ((["sweep"], "give a SPEC file"), (["sweep", str(tmp_path / "x.toml")], "does not exist"),
                        (["sweep", "--grid", "d=1,2", "--stages", "perf,nope"], "stages"),
                        (["sweep", "--grid", "d=64", "--workers", "0", "--engine", "ray"], "--workers"),
                        (["sweep", "--grid", "d=32,64", "--search", "tpe"], "needs samples"),
                        (["sweep", "--grid", "d=32,64", "--search", "tpe", "--samples", "2", "--stages", "resources"],
                         "must include perf")):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        err = r.stderr if hasattr(r, "stderr") else r.output
        assert err.count("\n") == 1 and err.startswith("error:") and words in err, (args, err)
