"""Matrix-matrix prefill (ISA version 2, docs/isa.md "Batched prefill") on the functional simulator: the
prefill_batch stream leaves the K/V cache exactly as token-serial prefill does, and the logits and greedy tokens
after it are bit-identical, on 1 and 2 devices, for prompts that are and are not multiples of the chunk; a
batched LINEAR / ALLGATHER equals its unbatched instructions; bad batched code stops with a SimError."""
import numpy as np
import pytest

from gpt2_fixtures import make_hf_gpt2
from dfx import isa
from dfx.compiler import compile_model
from dfx.errors import SimError
from dfx.host.session import Session
from dfx.models.checkpoint import load_default
from dfx.program import DeviceImage, Program
from dfx.sim.functional import Device
from dfx.sim.ring import Ring

M = 4
SMALL = dict(n_embd=36, n_head=3, n_layer=2, n_positions=24, vocab_size=70)     # head_dim 12: padded heads


@pytest.fixture(scope="module")
def small():
    return make_hf_gpt2(3, **SMALL)


@pytest.fixture(scope="module")
def programs(small):
    """(token-serial, batched) per device count."""
    return {n: (compile_model(small, "tiny", devices=n), compile_model(small, "tiny", devices=n, prefill_batch=M))
            for n in (1, 2)}


def _prefill_hbm(prog, ids, batched: bool) -> list[np.ndarray]:
    """Prefill `ids` at positions 0.. straight on the simulator (no host); every device's HBM afterwards."""
    ring = Ring(prog)
    if batched:
        sym = prog.symbols.prefill_batch
        for c in range(0, len(ids), sym.max_tokens):
            chunk = ids[c:c + sym.max_tokens]
            for dev in ring.devices:
                a = sym.tokens
                dev.ddr[a:a + 4 * (len(chunk) + 1)] = np.array([len(chunk), *chunk], "<u4").view(np.uint8)
            ring.run(sym.stream, 0, c)
    else:
        for pos, t in enumerate(ids):
            ring.run("prefill", t, pos)
    return [dev.hbm.copy() for dev in ring.devices]


def _ids(n, vocab, seed=0):
    return [int(x) for x in np.random.default_rng(seed).integers(0, vocab, n)]


@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("T", [1, 3, 4, 8, 9])
def test_kv_cache_is_bit_identical(programs, devices, T):
    serial, batched = programs[devices]
    ids = _ids(T, SMALL["vocab_size"], T)
    for a, b in zip(_prefill_hbm(serial, ids, False), _prefill_hbm(batched, ids, True)):
        assert np.array_equal(a, b), f"{int((a != b).sum())} HBM bytes differ (weights + K/V cache)"


@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("T", [1, 2, 5, 8, 9, 13])
def test_logits_and_greedy_tokens_are_bit_identical(programs, devices, T):
    serial, batched = programs[devices]
    ids = _ids(T, SMALL["vocab_size"], 100 + T)
    s, b = Session(serial, "sim"), Session(batched, "sim")
    np.testing.assert_array_equal(b.feed(ids).view(np.uint16), s.feed(ids).view(np.uint16))
    runs = [r.count for r in b.steps if r.stream == "prefill_batch"]
    assert runs == [min(M, T - 1 - c) for c in range(0, T - 1, M)]        # chunks of M, the rest, then decode
    assert list(Session(batched, "sim").generate(ids, 5)) == list(Session(serial, "sim").generate(ids, 5))


def test_quantized_weights(small):
    ids = _ids(7, SMALL["vocab_size"], 7)
    serial = compile_model(small, "tiny", weights="int4-oc-g32")
    batched = compile_model(small, "tiny", weights="int4-oc-g32", prefill_batch=3)
    np.testing.assert_array_equal(_prefill_hbm(batched, ids, True)[0], _prefill_hbm(serial, ids, False)[0])
    np.testing.assert_array_equal(Session(batched, "sim").feed(ids).view(np.uint16),
                                  Session(serial, "sim").feed(ids).view(np.uint16))


@pytest.mark.parametrize("devices", [1, 2])
def test_embedded_model(devices):
    net = load_default()
    serial = compile_model(net, "tiny", devices=devices, max_seq=48)
    batched = compile_model(net, "tiny", devices=devices, max_seq=48, prefill_batch=8)
    for text in (b"def main(self):\n    return x", b"import numpy as np\n"):     # 28 and 20 tokens: 27 and
        ids = list(text)                                                        # 19 batched, neither a multiple
        with Session(serial, "sim") as s, Session(batched, "sim") as b:
            np.testing.assert_array_equal(b.feed(ids).view(np.uint16), s.feed(ids).view(np.uint16))
        assert list(Session(batched, "sim").generate(ids, 6)) == list(Session(serial, "sim").generate(ids, 6))
    ids = list(b"x = 1\ny = 2\n")[:9]                                          # 8 batched: one full chunk
    for a, b in zip(_prefill_hbm(serial, ids[:8], False), _prefill_hbm(batched, ids[:8], True)):
        assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------ instructions
def _with(prog: Program, **streams) -> Program:
    """`prog` with extra assembled streams on every device."""
    devs = [DeviceImage({**img.streams, **{k: isa.assemble(v) for k, v in streams.items()}}, img.hbm, img.ddr)
            for img in prog.devices]
    return Program(prog.manifest, devs)


def _linear_fields(prog):
    ins = next(i for i in prog.devices[0].streams["decode"] if i.op.mnemonic == "LINEAR" and i.gelu)
    return ins


def test_batched_linear_rows_equal_unbatched(programs):
    prog = programs[1][0]
    lin = _linear_fields(prog)                                   # c_fc: bias + GELU
    k, n, d = lin.k, lin.n, prog.config.d
    ek, en = -(-k // d), -(-n // d)
    src, dst, bias = 0, 3 * ek + 1, 3 * ek + 2 + 3 * en        # src stride ek, dst stride en + 1
    common = f"w={lin.w:#x} k={k} n={n} bias={bias} +has_bias +gelu"
    batched = f"BATCH m=3 src_stride={ek} dst_stride={en + 1}\nLINEAR dst={dst} src={src} {common}\nHALT"
    serial = "\n".join(f"LINEAR dst={dst + i * (en + 1)} src={src + i * ek} {common}" for i in range(3)) + "\nHALT"
    p = _with(prog, b=batched, s=serial)
    rng = np.random.default_rng(1)
    init = rng.normal(0, 1, p.config.vbuf_elems).astype(np.float16)
    out = []
    for stream in ("b", "s"):
        dev = Device(p)
        dev.vbuf[:] = init
        dev.run(stream, 0, 0)
        out.append(dev.vbuf.view(np.uint16).copy())
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], init.view(np.uint16))


def test_batched_linear_reads_every_input_before_writing(programs):
    """Outputs may overlap inputs (ISA rule 5): row 1's input is row 0's output region."""
    prog = programs[1][0]
    lin = _linear_fields(prog)
    k, n, d = lin.k, lin.n, prog.config.d
    ek = -(-max(k, n) // d)
    common = f"w={lin.w:#x} k={k} n={n}"
    p = _with(prog, b=f"BATCH m=2 src_stride={ek} dst_stride={ek}\nLINEAR dst={ek} src=0 {common}\nHALT",
              s=f"LINEAR dst={3 * ek} src=0 {common}\nLINEAR dst={4 * ek} src={ek} {common}\nHALT")
    init = np.random.default_rng(2).normal(0, 1, p.config.vbuf_elems).astype(np.float16)
    a, b = Device(p), Device(p)
    a.vbuf[:], b.vbuf[:] = init, init
    a.run("b", 0, 0)
    b.run("s", 0, 0)
    np.testing.assert_array_equal(a.vector(ek, 2 * ek * d).view(np.uint16), b.vector(3 * ek, 2 * ek * d).view(np.uint16))


def test_batched_allgather_equals_unbatched(programs):
    prog = programs[2][0]
    g = next(i for i in prog.devices[0].streams["decode"] if i.op.mnemonic == "ALLGATHER")
    e = -(-g.n // prog.config.d)
    ag = f"n={g.n} devices=2 gran={g.gran}"
    p = _with(prog, b=f"BATCH m=3 src_stride={e} dst_stride={e}\nALLGATHER vaddr=0 {ag}\nHALT",
              s="\n".join(f"ALLGATHER vaddr={i * e} {ag}" for i in range(3)) + "\nHALT")
    out = []
    for stream in ("b", "s"):
        ring = Ring(p)
        for k, dev in enumerate(ring.devices):
            dev.vbuf[:] = np.random.default_rng(k).normal(0, 1, dev.vbuf.size).astype(np.float16)
        ring.run(stream, 0, 0)
        out.append([dev.vbuf.view(np.uint16).copy() for dev in ring.devices])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0][0][:3 * e * prog.config.d], out[0][1][:3 * e * prog.config.d])


def test_slots_set_token_and_position_and_skip(programs):
    """CHUNK reads COUNT, SLOT i sets TOKEN = table[i] and POS = POS0 + i or skips its section."""
    prog = programs[1][1]
    a = prog.symbols.prefill_batch.tokens
    text = f"""CHUNK addr={a:#x} cap=3
               SLOT skip=1
               NOP
               SLOT i=1 skip=2
               NOP
               NOP
               SLOT i=2 skip=1
               NOP
               HALT"""
    dev = Device(_with(prog, t=text))
    dev.ddr[a:a + 16] = np.array([2, 11, 22, 33], "<u4").view(np.uint8)
    seen = []

    def spy(h):                                     # a NOP that records the TOKEN and POS it runs with
        return lambda f: seen.append((dev.regs["TOKEN"], dev.regs["POS"])) or h(f)
    dev._streams["t"] = [(spy(h) if i.op.mnemonic == "NOP" else h, f, i, u) for h, f, i, u in dev._streams["t"]]
    dev.run("t", 7, 5)
    assert seen == [(11, 5), (22, 6), (22, 6)]                 # slot 2 does not exist: its NOP is skipped
    assert dev.regs["COUNT"] == 2 and dev.regs["POS0"] == 5


@pytest.mark.parametrize("text,table,match", [
    ("BATCH m=2\nVADD n=8\nHALT", None, "BATCH must be followed by LINEAR or ALLGATHER, not VADD"),
    ("HALT\nBATCH m=2", None, None),                                       # never reached: fine
    ("BATCH +dyn_m\nLINEAR k=8 n=8\nHALT", None, r"BATCH \+dyn_m before CHUNK"),
    ("BATCH\nLINEAR k=8 n=8\nHALT", None, "m must be >= 1"),
    ("BATCH m=2 src_stride=1 dst_stride=2\nALLGATHER n=8 devices=1\nHALT", None, "src_stride must equal"),
    ("SLOT skip=1\nNOP\nHALT", None, "SLOT before CHUNK"),
    ("CHUNK addr={a} cap=4\nHALT", [0], "COUNT 0; accepted: 1..4"),
    ("CHUNK addr={a} cap=4\nHALT", [5, 1, 2, 3, 4, 5], "COUNT 5; accepted: 1..4"),
    ("CHUNK addr={a2} cap=4\nHALT", [1, 1], "not 4-byte aligned"),
    ("CHUNK addr={a} cap=4\nSLOT i=3 skip=5\nHALT", [1, 1], r"skip=5 runs past the end of the stream \(1 "),
    ("CHUNK addr={a} cap=4\nBATCH +dyn_m\nQK k=8 +dyn_n\nHALT", [1, 1], "not QK"),
])
def test_bad_batched_code_stops_with_a_sim_error(programs, text, table, match):
    prog = programs[1][1]
    a = prog.symbols.prefill_batch.tokens
    dev = Device(_with(prog, x=text.format(a=a, a2=a + 2)))
    if table is not None:
        dev.ddr[a:a + 4 * len(table)] = np.array(table, "<u4").view(np.uint8)
    if match is None:
        dev.run("x", 0, 0)
        return
    with pytest.raises(SimError, match=match):
        dev.run("x", 0, 0)


def test_uneven_heads_and_overlapped_gathers():
    """10 heads on 4 devices (3, 3, 2, 2) with each gathered output cut into 2 segments: batched gathers too."""
    m = make_hf_gpt2(7, n_embd=160, n_head=10, n_layer=2, n_positions=32, vocab_size=263)
    ids = [5, 17, 99, 3, 250, 7, 8, 9, 10, 11]
    ref = Session(compile_model(m, "tiny"), "sim").feed(ids)
    prog = compile_model(m, "tiny", devices=4, overlap=2, prefill_batch=4)
    assert any(i.op.mnemonic == "ALLGATHER" for i in prog.devices[0].streams["prefill_batch"])
    np.testing.assert_array_equal(Session(prog, "sim").feed(ids).view(np.uint16), ref.view(np.uint16))
