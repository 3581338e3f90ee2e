# amaranth: UnusedElaboratable=no
"""Instruction costs (dfx.perf.timing): hand-computed cycle counts from the board's constants, and in
serial-issue mode the RTL core's own cycle counts read from hw/. (The first line tells Amaranth the MPU and VPU
built here for their latency are never elaborated.)"""
import math

from perf_programs import cycles, hand

from dfx import isa
from dfx.config import load_config
from dfx.hw.core import Core
from dfx.hw.core_vpu import VectorEngine
from dfx.hw.mpu import MPU
from dfx.hw.vpu import VPU
from dfx.perf import Timing, isolated_cycles, load_board, serial_costs


def test_matrix_instruction_by_hand(board):
    # tiny: d=8, l=4 -> a tile is 64 B; 4 HBM channels x 128 bit = 64 B per cycle at the core's ports
    prog = hand(["LINEAR dst=4 src=0 k=16 n=8\nHALT"])
    v = board.value
    # the first beat of a 4 KiB burst (a new row: Shuhai's page-miss latency) + the converters, at 200 MHz
    hbm_lat = math.ceil((v("hbm", "page_miss_latency_ns") + v("hbm", "converter_cycles") * 5) * 0.2)
    assert 4 * v("hbm", "channel_peak_gbps") * 1e9 * v("hbm", "efficiency") / 200e6 > 64   # port-bound
    tiles = 2 * 2                                                            # ceil(16/8) x ceil(8/4)
    mem = tiles * 64 / 64
    add, mul = v("core", "fp_add_cycles"), v("core", "fp16_mul_cycles")
    comp = 2 * max(2, add)                      # 2 column blocks < add latency: in-order accumulation waits
    occ = max(mem, comp)
    lat = v("core", "vbuf_cycles") * 2 + mul + 3 * add + add + v("core", "fp_round_cycles")
    assert cycles(prog) == hbm_lat + occ + lat == 111
    assert isolated_cycles("LINEAR dst=4 src=0 k=16 n=8", load_config("tiny"), engines="pipelined")["total"] == 111


def serial(instr: str, cfg, board="u280") -> int:
    return isolated_cycles(instr, cfg, board, serial_issue=True)["total"]


def test_serial_costs_are_the_rtls():
    """Serial issue charges what hw/ defines: the controller's issue cycles, each engine's setup and feed, the
    MPU's and the VPU's own pipeline latencies (each VPU operation its own), a beat per tile or chunk."""
    cfg = load_config("tiny")
    c = serial_costs(cfg)
    mpu, vpu = MPU(cfg), VPU(cfg, **VectorEngine.vpu_params(cfg))          # the core's VPU
    assert (c.issue_cycles, c.mpu_latency) == (Core.ISSUE_CYCLES, mpu.latency)
    vec = c.issue_cycles + c.setup["vpu"] + c.feed["vpu"]
    assert {m: c.vpu_op_latency(m) for m in ("VADD", "VEXP", "VSUM", "SRSQRT")} == \
        {m: vpu.op_latency(m) for m in ("VADD", "VEXP", "VSUM", "SRSQRT")}
    assert serial("VADD dst=10 a=0 b=2 n=16", cfg) == vec + vpu.op_latency("VADD") + 2
    assert serial("VEXP dst=10 a=0 n=16", cfg) == vec + vpu.op_latency("VEXP") + 2 * vpu.sfu_share    # shared exp
    assert serial("VSUM a=0 n=17 sd=1", cfg) == vec + vpu.op_latency("VSUM") + 1 + 2 * (vpu.red_stages + 1)
    assert serial("SRSQRT sd=1 sa=2", cfg) == vec + vpu.op_latency("SRSQRT") + 1
    hbm_lat = Timing(cfg, load_board("u280")).hbm_read_lat
    assert serial("LINEAR dst=4 src=0 k=16 n=8", cfg) == (c.issue_cycles + c.setup["mpu"] + hbm_lat + c.feed["mpu"]
                                                          + c.mpu_latency + 2 * 2)
    assert serial("NOP", cfg) == serial("HALT", cfg) == c.issue_cycles


def test_serial_dma_counts_pieces():
    """DMA pieces as hw/dma.py cuts them (tiny: d = 8, DDR beat 16 B = one VBUF entry, HBM channel beat 16 B)."""
    cfg = load_config("tiny")
    t = Timing(cfg, load_board("u280"), serial_issue=True)
    f = lambda text: isa.assemble_line(text).fields()                       # noqa: E731
    assert t.dma_pieces("LOAD", f("LOAD vaddr=0 addr=64 n=16")) == (1, 2)     # aligned: one entry per beat
    assert t.dma_pieces("LOAD", f("LOAD vaddr=0 addr=66 n=16")) == (1, 4)     # 7 + 1 + 7 + 1 elements
    assert t.dma_pieces("STORE_K", f("STORE_K vaddr=0 addr=1 n=12 +hbm")) == (2, 2)   # a row per tile
    assert t.dma_pieces("STORE_VT", f("STORE_VT vaddr=0 addr=1 n=5 +hbm")) == (5, 5)  # an element per run
    c, ddr_lat = t.rtl, t.ddr_lat
    load = serial("LOAD vaddr=0 addr=66 n=16", cfg)
    store = serial("STORE vaddr=0 addr=66 n=16", cfg)
    assert load == c.issue_cycles + c.setup["dma"] + c.dma_run + 4 * c.load_piece + ddr_lat + c.load_drain
    assert store == c.issue_cycles + c.setup["dma"] + c.dma_run + 4 * c.store_piece + ddr_lat + c.store_drain
