"""The core's completion events as a cocotb testbench sees them: the debug outputs `dbg_ev` (one bit per event
slot), `dbg_ev_pc<i>` / `dbg_ev_op<i>` (the PC and opcode of slot i) and `dbg_tick` (toggles when any slot
fires), registered one cycle after the completion. Both harnesses record them the same way: the cocotbext-axi
harness (`dfx.verify.core_tb`) and the fast one (`dfx.verify.fast_tb`, with the outputs made public)."""
from __future__ import annotations


async def record_retires(core, clock_ns: int, events: list) -> None:
    """Forever: append (pc, opcode, cycle) to `events` for every slot that fires, on each change of `dbg_tick`
    (a value-change callback per completion, no Python per cycle)."""
    # lazy: cocotb exists only inside the simulator process
    from cocotb.triggers import Edge, ReadOnly
    from cocotb.utils import get_sim_time
    n_ev = len(core.dbg_ev)
    pcs = [getattr(core, f"dbg_ev_pc{i}") for i in range(n_ev)]
    codes = [getattr(core, f"dbg_ev_op{i}") for i in range(n_ev)]
    while True:
        await Edge(core.dbg_tick)
        await ReadOnly()
        now = get_sim_time("ns") // clock_ns - 1          # the event outputs are registered
        ev = int(core.dbg_ev.value)
        events.extend((int(pcs[i].value), int(codes[i].value), now) for i in range(n_ev) if ev >> i & 1)
