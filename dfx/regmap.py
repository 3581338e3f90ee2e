"""The core's host register map, defined once as data (docs/design.md, contracts 1 and 7).

The RTL's AXI4-Lite slave (`hw/`), the Vitis kernel description (`kernel.xml`, `boards/`), the host backends
(`host/`) and `docs/regmap.md` all come from `regmap(cfg)`; nobody writes a register offset by hand elsewhere.

Layout. The block follows Vitis' `ap_ctrl_hs` convention for RTL kernels, so the same core is a Vitis kernel
without a wrapper translating registers:

- 0x00 CTRL: bit 0 ap_start (host writes 1; the core clears it when it accepts the start), bit 1 ap_done
  (set when the run ends, cleared when CTRL is read), bit 2 ap_idle, bit 3 ap_ready, bit 7 auto_restart
  (accepted, unused). 0x04 GIE, 0x08 IER, 0x0C ISR: interrupt enable/status (bit 0 done).
- 0x10 onward, the kernel arguments in `kernel.xml` order, each 64-bit argument as two 32-bit words (low
  first): one base pointer per HBM pseudo-channel port (`hbm00`..), the DDR base (`ddr`: tables, I/O and the
  instruction streams), then the 32-bit scalars ENTRY (byte offset of the stream to run inside DDR), TOKEN and
  POS (the host protocol of `host/backends.py`: set TOKEN/POS, start a stream, read the logits from DDR), and
  RING_POS / RING_SIZE (the core's place in the ring, written once when a multi-device program is loaded).
- After the arguments, read-only registers the host and the tests read: ID (`DFX_MAGIC`), ISA_VERSION,
  CONFIG_HASH (the first 64 bits of `AccelConfig.config_hash`, two words), STATUS (error bits, below),
  ERROR_PC (the PC of the instruction that raised an error), CYCLES (64-bit cycles of the last run) and one
  64-bit busy-cycle counter per unit (MPU, VPU, DMA, ROUTER).

Errors. An illegal opcode, a reserved-bit violation or an out-of-range address sets its STATUS bit, stores
ERROR_PC, and ends the run (ap_done rises, the core goes idle): the bus never hangs.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from .config import AccelConfig, load_config

DFX_MAGIC = 0x44465831            # "DFX1"

# CTRL bits (Vitis ap_ctrl_hs)
AP_START, AP_DONE, AP_IDLE, AP_READY, AUTO_RESTART = 0x1, 0x2, 0x4, 0x8, 0x80

# STATUS bits
STATUS_BITS = {
    "illegal_opcode": 0x1,       # unknown opcode or nonzero reserved bits
    "address_range": 0x2,        # VBUF/HBM/DDR access out of range
    "fence": 0x4,                # read of off-chip data a DMA wrote without a FENCE in between
    "ring": 0x8,                 # router error (bad peer, ring timeout)
    "invalid": 0x10,             # an instruction breaks a static rule of dfx.isa_check (zero length or granule, ...)
    "halted": 0x100,             # the last run ended at HALT (no error)
}

COUNTER_UNITS = ("MPU", "VPU", "DMA", "ROUTER")

CTRL, GIE, IER, ISR = 0x00, 0x04, 0x08, 0x0C
ARGS_BASE = 0x10


@dataclass(frozen=True)
class Register:
    name: str
    offset: int          # byte offset of the (low) 32-bit word
    width: int           # 32 or 64 bits
    access: str          # "rw", "ro", "rc" (read clears), "w1s" (write 1 to set)
    doc: str
    arg: str | None = None    # kernel.xml argument kind: "pointer" (m_axi base) or "scalar"; None = not an arg
    port: str | None = None   # the m_axi interface a pointer argument belongs to

    @property
    def words(self) -> int:
        return self.width // 32


def hbm_port_name(i: int) -> str:
    return f"m_axi_hbm{i:02d}"


def regmap(cfg: AccelConfig) -> tuple[Register, ...]:
    """All registers of a core built for `cfg`, in offset order."""
    regs = [
        Register("CTRL", CTRL, 32, "rw", "bit0 ap_start, bit1 ap_done (clear on read), bit2 ap_idle, "
                 "bit3 ap_ready, bit7 auto_restart"),
        Register("GIE", GIE, 32, "rw", "global interrupt enable (bit 0)"),
        Register("IER", IER, 32, "rw", "interrupt enable (bit 0: done)"),
        Register("ISR", ISR, 32, "rw", "interrupt status (bit 0: done; write 1 to clear)"),
    ]
    off = ARGS_BASE
    for i in range(cfg.hbm_channels):
        regs.append(Register(f"HBM{i:02d}", off, 64, "rw", f"base address of HBM pseudo-channel port {i}",
                             arg="pointer", port=hbm_port_name(i)))
        off += 8
    regs.append(Register("DDR", off, 64, "rw", "base address of the DDR region (tables, I/O, instruction streams)",
                         arg="pointer", port="m_axi_ddr"))
    off += 8
    for name, doc in (("ENTRY", "byte offset in DDR of the instruction stream to run"),
                      ("TOKEN", "input token of this run (the TOKEN register of the ISA)"),
                      ("POS", "position of this run (the POS register of the ISA)"),
                      ("RING_POS", "this core's position in the ring (0-based; ALLGATHER chunk it owns)"),
                      ("RING_SIZE", "devices in the ring (0 or 1: a single core)")):
        regs.append(Register(name, off, 32, "rw", doc, arg="scalar"))
        off += 4
    off = -(-off // 8) * 8
    for name, width, doc in (
            ("ID", 32, f"0x{DFX_MAGIC:08x} ('DFX1')"),
            ("ISA_VERSION", 32, "dfx.isa.ISA_VERSION the core decodes"),
            ("CONFIG_HASH", 64, "first 16 hex digits of AccelConfig.config_hash, as an integer"),
            ("STATUS", 32, "error and state bits: " + ", ".join(f"0x{v:x} {k}" for k, v in STATUS_BITS.items())),
            ("ERROR_PC", 32, "PC (instruction index in the stream) of the instruction that raised the first error "
                             "(units complete out of order: the oldest of those failing in the same cycle)"),
            ("CYCLES", 64, "cycles from ap_start to ap_done of the last run")):
        regs.append(Register(name, off, width, "ro", doc))
        off += width // 8
    for unit in COUNTER_UNITS:
        regs.append(Register(f"BUSY_{unit}", off, 64, "ro", f"cycles the {unit} was busy in the last run"))
        off += 8
    return tuple(regs)


def by_name(cfg: AccelConfig) -> dict[str, Register]:
    return {r.name: r for r in regmap(cfg)}


def config_hash_word(cfg: AccelConfig) -> int:
    """The 64-bit value of CONFIG_HASH for `cfg`."""
    return int(cfg.config_hash[:16], 16)


def span(cfg: AccelConfig) -> int:
    """Bytes of address space the register block decodes (a power of two, at least 4 KiB)."""
    end = max(r.offset + r.width // 8 for r in regmap(cfg))
    size = 4096
    while size < end:
        size *= 2
    return size


def doc(cfg: AccelConfig) -> str:
    lines = [f"# Register map ({cfg.name} config: {cfg.hbm_channels} HBM ports)", "",
             "Generated by `python -m dfx.regmap --doc` from `dfx/regmap.py`; do not edit.", "",
             "| offset | name | bits | access | kernel arg | meaning |", "|---|---|---|---|---|---|"]
    for r in regmap(cfg):
        arg = f"{r.arg} ({r.port})" if r.port else (r.arg or "")
        lines.append(f"| 0x{r.offset:03x} | {r.name} | {r.width} | {r.access} | {arg} | {r.doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Print the core's register map as a Markdown table.")
    p.add_argument("--doc", action="store_true", help="print docs/regmap.md")
    p.add_argument("--config", default="dfx", help="tiny, dfx or a config JSON file (default dfx)")
    a = p.parse_args()
    print(doc(load_config(a.config)), end="")
