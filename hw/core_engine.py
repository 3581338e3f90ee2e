"""The contract between the core's controller (hw/core.py) and its execution engines.

Every engine -- matrix (hw/core_mpu.py), vector (hw/core_vpu.py), DMA (hw/dma.py), router (hw/router.py) -- is
an `Engine`: a component with the member `ctl` of `engine_signature(cfg, errors)`. The signature is the
controller's view; the engine takes it flipped (`In`):

    start   Out(1)               one cycle: begin the instruction in `word`
    word    Out(WordLayout)      the instruction (held until `done`)
    done    In(1)                one cycle: the instruction completed, or stopped with an error
    ready   In(1)                (engines with IN_FLIGHT > 1) `start` may come now, while earlier ones drain
    busy    In(1)                the engine is running an instruction (the BUSY_<unit> counters)
    err     In(struct)           with `done`: why it stopped; one 1-bit flag per error the engine declares
    vbuf    In(vbuf port)        the engine's VBUF port (hw/buffers.py): its read ports (`VBUF_READS` of them
                                 are connected) and a request on the shared write port (`w_req`), granted by `w_rdy`

An engine class declares `UNIT`, the `dfx.isa.Unit` whose instructions it runs, `ERRORS`, the names of the
`dfx.regmap.STATUS_BITS` its `err` flags raise, and `VBUF_READS`, the read ports of its VBUF port it uses (each
gets a read port of VBUF of its own). An engine latches what it needs of `word` in the cycle of `start`, so the
controller may present the next instruction of its queue while it runs; `start` comes only when the engine is
idle (it has raised `done` for the previous instruction), or, for an engine that declares `IN_FLIGHT` > 1, when it
raises `ready` with fewer than IN_FLIGHT instructions started and not done: a pipelined engine takes the next
instruction while earlier ones drain, and raises `done` once per instruction, in order. The controller starts the engine of the decoded unit, and when
the engine is done with a flag raised, sets that STATUS bit and ERROR_PC: one table (`STATUS_BITS`, whose order
is the priority) for every engine. The rest of an engine's ports are the resources it uses (POS, TOKEN, scalar
registers, AXI masters, ring links), wired by the controller one by one. POS and TOKEN are the instruction's
from the cycle after `start` (the controller registers them at `start`): an engine reads them from its SETUP on.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dfx import isa, regmap
from dfx.config import AccelConfig

from .buffers import vbuf_port_signature
from .decoder import WordLayout


def engine_signature(cfg: AccelConfig, errors: tuple[str, ...]) -> wiring.Signature:
    """The engine contract (the controller's view) for an engine that raises `errors` (STATUS bit names)."""
    unknown = [e for e in errors if e not in regmap.STATUS_BITS]
    if unknown:
        raise ValueError(f"engine errors {unknown} are not STATUS bits; accepted: {', '.join(regmap.STATUS_BITS)}")
    return wiring.Signature({
        "start": Out(1), "word": Out(WordLayout), "done": In(1), "ready": In(1), "busy": In(1),
        "err": In(data.StructLayout({e: 1 for e in errors})),
        "vbuf": In(vbuf_port_signature(cfg)),
    })


class Engine(wiring.Component):
    """Base of the execution engines: `ctl` (`engine_signature` for the class's `ERRORS`) plus the engine's own
    `members`."""

    UNIT: isa.Unit
    ERRORS: tuple[str, ...] = ()
    VBUF_READS: tuple[str, ...] = ("ra", "rb")
    IN_FLIGHT = 1

    def __init__(self, cfg: AccelConfig, members: dict):
        self.cfg = cfg
        super().__init__({"ctl": In(engine_signature(cfg, self.ERRORS)), **members})
