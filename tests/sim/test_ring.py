"""Multi-FPGA programs on the ring simulator: every N gives the single-device logits bit for bit."""
import dataclasses
import time

import numpy as np
import pytest

from gpt2_fixtures import make_hf_gpt2
from dfx import isa
from dfx.compiler import compile_model
from dfx.errors import CompileError, DeviceError, ProgramError, SimError
from dfx.host.session import Session
from dfx.program import load_program, save_program
from dfx.sim.functional import DeadlineExceeded
from dfx.sim.ring import Ring

# 10 heads: uneven on 3, 4 and 8 devices; n_embd 160 = 20 VBUF entries at d=8
WIDE = dict(n_embd=160, n_head=10, n_layer=2, n_positions=32, vocab_size=263)


@pytest.fixture(scope="module")
def wide():
    return make_hf_gpt2(7, **WIDE)


def _logits(prog, ids):
    return Session(prog, "sim").feed(ids).view(np.uint16)


@pytest.mark.parametrize("devices,overlap", [(2, 1), (3, 1), (4, 1), (8, 1), (4, 2), (8, 3)])
def test_partitioned_logits_are_bit_identical(wide, devices, overlap):
    ids = [5, 17, 99, 3, 250]
    ref = _logits(compile_model(wide, "tiny"), ids)
    prog = compile_model(wide, "tiny", devices=devices, overlap=overlap)
    assert prog.n_devices == devices
    np.testing.assert_array_equal(_logits(prog, ids), ref)


def test_partitioned_generation(wide):
    ids = [1, 2, 3]
    one = list(Session(compile_model(wide, "tiny"), "sim").generate(ids, 12))
    four = list(Session(compile_model(wide, "tiny", devices=4, overlap=2), "sim").generate(ids, 12))
    assert one == four


def test_uneven_heads_and_gathers(wide):
    prog = compile_model(wide, "tiny", devices=4)
    heads = [sum(i.op.mnemonic == "QK" for i in d.streams["decode"]) // WIDE["n_layer"] for d in prog.devices]
    assert heads == [3, 3, 2, 2]                          # 10 heads on 4 devices
    gathers = sum(i.op.mnemonic == "ALLGATHER" for i in prog.devices[0].streams["decode"])
    assert gathers == 4 * WIDE["n_layer"]                 # DFX: 4 syncs per decoder layer
    ov = compile_model(wide, "tiny", devices=4, overlap=2)
    assert sum(i.op.mnemonic == "ALLGATHER" for i in ov.devices[0].streams["decode"]) == 7 * WIDE["n_layer"]


def test_more_devices_than_heads():
    m = make_hf_gpt2(1, n_embd=64, n_head=2, n_layer=1, n_positions=16, vocab_size=50)
    with pytest.raises(CompileError, match="3 devices but only 2 attention heads"):
        compile_model(m, "tiny", devices=3)


def test_program_for_4_devices_on_2(wide, tmp_path):
    prog = compile_model(wide, "tiny", devices=4)
    with pytest.raises(DeviceError, match="compiled for 4 device.*2 were opened"):
        Session(prog, "sim", devices=2)


def test_ring_order_must_be_a_permutation(wide):
    prog = compile_model(wide, "tiny", devices=2)
    prog.manifest = dataclasses.replace(prog.manifest, ring=(0, 0))
    with pytest.raises(SimError, match=r"ring order \[0, 0\] is not a permutation"):
        Ring(prog)


def test_deadlock_is_reported(wide):
    prog = compile_model(wide, "tiny", devices=2)
    s = prog.devices[1].streams["decode"]
    first = next(i for i, ins in enumerate(s) if ins.op.mnemonic == "ALLGATHER")
    prog.devices[1].streams["decode"] = s[:first] + [isa.Instr("HALT")]
    with pytest.raises(SimError, match=r"deadlock in stream decode: device 0 pc \d+ `ALLGATHER .*` waits for "
                                       r"devices 1 \(halted\)"):
        Ring(prog).run("decode", 1, 0)
    with pytest.raises(ProgramError, match="decode stream of device 1: no STORE writes its logits"):
        Session(prog, "sim")                # the host refuses it at load: device 1 never writes its logits


def test_recv_without_send_is_a_deadlock(wide):
    prog = compile_model(wide, "tiny", devices=2)
    prog.devices[0].streams["prefill"] = [isa.Instr("RECV", vaddr=0, n=8), isa.Instr("HALT")]
    prog.devices[1].streams["prefill"] = [isa.Instr("HALT")]
    with pytest.raises(SimError, match=r"device 0 pc 0 `RECV n=8` waits for a message from device 1"):
        Ring(prog).run("prefill", 1, 0)


def test_send_recv_moves_data(wide):
    prog = compile_model(wide, "tiny", devices=2)
    prog.devices[0].streams["prefill"] = [isa.Instr("SEND", vaddr=0, n=8), isa.Instr("HALT")]
    prog.devices[1].streams["prefill"] = [isa.Instr("RECV", vaddr=2, n=8), isa.Instr("HALT")]
    r = Ring(prog)
    r.devices[0].vbuf[:8] = np.arange(8)
    r.run("prefill", 1, 0)
    np.testing.assert_array_equal(r.devices[1].vbuf[16:24], np.arange(8))


def test_allgather_the_isa_refuses_never_reaches_the_ring(wide):
    """A granule of 0 (a ZeroDivisionError in isa.chunk_bounds once) stops the device at its pc, on either device."""
    prog = compile_model(wide, "tiny", devices=2)
    s = prog.devices[1].streams["decode"]
    pc = next(i for i, ins in enumerate(s) if ins.op.mnemonic == "ALLGATHER")
    fields = {**s[pc].fields(), "gran": 0}
    prog.devices[1].streams["decode"] = s[:pc] + [isa.Instr("ALLGATHER", **fields)] + s[pc + 1:]
    with pytest.raises(SimError, match=rf"device 1 decode pc {pc} `ALLGATHER .*`: ALLGATHER gran=0: the split "
                                       "granule must be >= 1"):
        Ring(prog).run("decode", 1, 0)


def test_ring_deadline(wide):
    prog = compile_model(wide, "tiny", devices=2)
    with pytest.raises(DeadlineExceeded, match=r"device 0 decode pc 0 .*: the run did not finish by its deadline"):
        Ring(prog).run("decode", 1, 0, deadline=time.monotonic() - 1)


def test_multi_device_program_roundtrip(wide, tmp_path):
    prog = compile_model(wide, "tiny", devices=4)
    p = save_program(prog, tmp_path / "w.dfx")
    q = load_program(p)
    assert q.n_devices == 4 and q.manifest.ring == (0, 1, 2, 3)
    np.testing.assert_array_equal(_logits(q, [4, 5]), _logits(prog, [4, 5]))


@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_golden_tokens_on_n_devices(wide, devices):
    """Greedy tokens on N simulated devices equal the PyTorch golden model's (HF GPT2LMHeadModel here)."""
    import torch
    ids = [9, 8, 7]
    with torch.no_grad():
        ref = wide.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, pad_token_id=0,
                            attention_mask=torch.ones(1, 3, dtype=torch.long))[0, 3:].tolist()
    prog = compile_model(wide, "tiny", devices=devices, overlap=2 if devices > 2 else 1)
    assert list(Session(prog, "sim").generate(ids, 16)) == ref


@pytest.mark.parametrize("devices", [2, 4])
def test_embedded_model_on_n_devices(devices):
    from dfx.models.checkpoint import load_default
    model = load_default()
    ids = list(b"import ")
    prog = compile_model(model, "tiny", devices=devices)
    assert list(Session(prog, "sim").generate(ids, 12)) == list(model.generate(ids, 12))


def test_ring_in_parallel_equals_one_by_one(wide):
    """The devices of a ring run on threads of their own (`Ring.parallel`, where the host has cores): the state
    of every device after a run is bit-identical to running them one by one, and so are the logits."""
    prog = compile_model(wide, "tiny", devices=4, overlap=2)
    rings = [Ring(prog), Ring(prog)]
    rings[0].parallel, rings[1].parallel = False, True
    for pos, tok in enumerate([5, 17, 99]):
        for r in rings:
            r.run("prefill" if pos < 2 else "decode", tok, pos)
    for a, b in zip(*(r.devices for r in rings)):
        np.testing.assert_array_equal(a.vbuf.view(np.uint16), b.vbuf.view(np.uint16))
        np.testing.assert_array_equal(a.hbm, b.hbm)
        np.testing.assert_array_equal(a.ddr, b.ddr)
    with pytest.raises(SimError, match="deadlock"):        # errors come back from the device threads
        bad = Ring(prog)
        bad.parallel = True
        bad.devices[1]._streams["decode"] = bad.devices[1]._predecode([isa.Instr("HALT")], "decode")
        bad.run("decode", 1, 0)
