"""The fast harness (`dfx.verify.fast_top`: memories inside the design) on a plain ring of n cores: what the
multi-device `rtl` backend runs programs on.

    runner, bdir, top = build_fast_ring(cfg, 2, sim="verilator", wformats=("int4",))

The design is `dfx.verify.fast_top.FastTop(cfg, n)` (n cores' memories, control ports and debug probes) around
`dfx.hw.ring_top.PlainRing` (the ring, top `dfx_ring<n>`: core k's ring_tx straight into core k+1's ring_rx),
whose cores are instances of the one core module, generated once per config, weight families and RTL sources
(`dfx.verify.ring_cosim.core_module_text`, cached under build/ring_kernel/modules/): converting a ring of n
cores in one piece (`dfx.hw.top.RingTop`) costs n times the Amaranth and Yosys time, and more. The build lives
under build/rtl_fast_ring/ and is redone only when its Verilog changes.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations of what it converts)

import hashlib
from pathlib import Path

from amaranth.back import verilog as back

from dfx.config import AccelConfig
from dfx.hw.ring_top import plain_ring_verilog

from .axi_mem import RAM_VERILOG
from .core_build import REPO, source_hash
from .fast_top import DDR_ABITS, HBM_ABITS, FastTop, fast_name
from .ring_cosim import build_text, core_module_text
from .waves import check_probe, probe_verilog

BUILD = REPO / "build" / "rtl_fast_ring"


def ring_fast_verilog(cfg: AccelConfig, n: int, wformats: tuple[str, ...] = ()) -> str:
    """The whole design as one Verilog text (top `dfx.verify.fast_top.fast_name(n)`): the core module, the ring,
    the fast wrapper with its memories, the debug probes."""
    core = core_module_text(cfg, wformats)
    check_probe(core)
    wrapper = back.convert(FastTop(cfg, n, DDR_ABITS, HBM_ABITS), name=fast_name(n), emit_src=False)
    return "\n".join((core, plain_ring_verilog(cfg, n), wrapper, probe_verilog(fast_name(n), n), RAM_VERILOG))


def _key(cfg: AccelConfig, n: int, sim: str, wformats) -> str:
    """What the build is made of: the RTL sources, the harness's own (fast_top, axi_mem, waves, ring_top), the
    parameters."""
    h = hashlib.sha256(repr((cfg.config_hash, n, sim, tuple(wformats), DDR_ABITS, HBM_ABITS)).encode())
    h.update(source_hash().encode())
    here = Path(__file__).parent
    for p in (here / "fast_top.py", here / "axi_mem.py", here / "waves.py", here / "ring_harness.py",
              REPO / "hw" / "ring_top.py"):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_fast_ring(cfg: AccelConfig, n: int, sim: str, wformats: tuple[str, ...] = ()) -> tuple:
    """Build the ring of `n` cores in the fast harness for `sim` (cached). Returns (runner, build_dir, top)."""
    top = fast_name(n)
    bdir = BUILD / (f"{cfg.name}_{cfg.config_hash}_{sim}_ring{n}" + "".join(f"_{f}" for f in wformats))
    runner = build_text(lambda: ring_fast_verilog(cfg, n, wformats), _key(cfg, n, sim, wformats), top, bdir, sim,
                        fast=True)
    return runner, bdir, top


__all__ = ["BUILD", "build_fast_ring", "ring_fast_verilog"]
