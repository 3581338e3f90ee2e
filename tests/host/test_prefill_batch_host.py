"""Batched prefill on the host (docs/isa.md "Batched prefill"): the session runs the prompt through
prefill_batch on the sim backend (one token-table write + one run per chunk, the simulator kept) and on the pynq
backend (the kernel runs them; the rtl backend's run is tests/hw/test_core_batch.py), and the command line compiles,
runs and disassembles them with unchanged output."""
import re

import numpy as np
import pytest
from click.testing import CliRunner

from gpt2_fixtures import make_hf_gpt2
from dfx.cli import main
from dfx.compiler import compile_model
from dfx.host.backends import open_devices
from dfx.host.device import DeviceGroup, KernelError
from dfx.host.fakepynq import FakePynq, write_fake_xclbin
from dfx.host.image import DDR_BANK
from dfx.host.session import Session

MODEL = dict(n_embd=32, n_head=2, n_layer=2, n_positions=24, vocab_size=61)


@pytest.fixture(scope="module")
def model():
    return make_hf_gpt2(3, **MODEL)


@pytest.fixture(scope="module")
def batched(model):
    return compile_model(model, "tiny", devices=2, prefill_batch=3)


def test_session_runs_chunks_and_keeps_the_simulator(batched, model):
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    with Session(batched, "sim") as s:
        boards = [d.t.board for d in s.backend.devices]
        logits = s.feed(ids[:4])
        sims = [b.sim for b in boards]
        logits = s.feed(ids[4:])
        assert [b.sim for b in boards] == sims and all(b.built == b.generation for b in boards)
        assert [(r.stream, r.pos, r.count) for r in s.steps] == [
            ("prefill_batch", 0, 3), ("decode", 3, 1), ("prefill_batch", 4, 3), ("decode", 7, 1)]
        assert all(r.max_cycles > 0 and r.busy[0]["mpu"] > 0 for r in s.steps)    # the model's counters
        summary = s.summary()
        assert summary["steps"] == 4
    ref = Session(compile_model(model, "tiny", devices=2), "sim").feed(ids)
    np.testing.assert_array_equal(logits.view(np.uint16), ref.view(np.uint16))


def test_host_write_over_a_stream_is_fetched_again(batched):
    """The sim backend writes small DDR buffers straight into the simulator; a write over an instruction stream
    drops that stream's decoded copy."""
    devs = open_devices(batched, "sim")
    group = DeviceGroup(devs)
    group.load(batched)
    group.run("prefill", 5, 0)
    bad = bytes([0xFF]) + bytes(15)                                 # an opcode the ISA does not define
    group.write_all(DDR_BANK, devs[0].image.entries["prefill"], bad)
    with pytest.raises(KernelError, match="illegal_opcode.*pc 0 of the prefill stream"):
        group.run("prefill", 5, 1)


def test_pynq_backend_runs_batched_programs(batched, model, tmp_path):
    """The kernel runs BATCH/CHUNK/SLOT (the RTL core implements them, docs/rtl_core.md "Batched prefill"): the
    pynq backend loads a batched program and feeds the prompt through prefill_batch, to the logits of the
    token-serial program on the sim backend."""
    ids = [1, 2, 3, 4, 5]
    fake = FakePynq(2, program=batched)
    x = write_fake_xclbin(tmp_path / "dfx.xclbin", batched.config)
    with Session(batched, "pynq", xclbin=x, pynq=fake) as s:
        logits = s.feed(ids)
        assert [r.stream for r in s.steps][0] == "prefill_batch"
    ref = Session(compile_model(model, "tiny", devices=2), "sim").feed(ids)
    np.testing.assert_array_equal(logits.view(np.uint16), ref.view(np.uint16))
    assert fake.live_buffers() == 0


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_cli_compile_run_disasm(tmp_path):
    serial, batched = tmp_path / "s.dfx", tmp_path / "b.dfx"
    assert _cli("compile", "-o", serial, "--max-seq", 64)[0] == 0
    code, _, err = _cli("compile", "-o", batched, "--max-seq", 64, "--prefill-batch", 8)
    assert code == 0 and "prefill_batch" in err
    prompt = "def add(a, b):\n    return"
    a = _cli("run", serial, "--prompt", prompt, "--max-new-tokens", 8)
    b = _cli("run", batched, "--prompt", prompt, "--max-new-tokens", 8)
    assert a[0] == b[0] == 0 and a[1] == b[1]
    code, out, _ = _cli("disasm", batched, "--stream", "prefill_batch")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("# device 0 stream prefill_batch") and lines[1].startswith("CHUNK")
    assert any(line.startswith("BATCH") for line in lines) and any(line.startswith("SLOT") for line in lines)


@pytest.mark.parametrize("m,msg", [
    (0, r"--prefill-batch 0: give the tokens per batched prefill run, an integer in 1\.\.64"),
    (65, r"--prefill-batch 65: give the tokens per batched prefill run"),
    (64, r"--prefill-batch 64: a chunk of 64 tokens needs \d+ VBUF entries .* config 'tiny' has 4096; the "
         r"largest chunk that fits is 16: use --prefill-batch 16"),
])
def test_cli_bad_prefill_batch_is_one_line_exit_2(m, msg, tmp_path):
    code, _, err = _cli("compile", "-o", tmp_path / "x.dfx", "--max-seq", 64, "--prefill-batch", m)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(msg, err), err
    assert not (tmp_path / "x.dfx").exists()
