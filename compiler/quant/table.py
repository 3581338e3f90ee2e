"""docs/numerics.md's weight-format table (`python -c "from dfx.compiler.quant.table import weight_format_table;
print(weight_format_table())"`), checked by tests/compiler/test_quant.py."""
from __future__ import annotations

import numpy as np

from dfx import formats as F
from dfx.config import PRESETS
from dfx.models.checkpoint import load_default
from dfx.models.gpt2 import named_config

from .weight import quantize_weight

TABLE_FORMATS = ("fp16", "int8-oc", "int8-oc-g128", "int4-oc-g128", "int4-ic-g128", "int4-oc-g64", "int4-ic-g64",
                 "int4-oc-g128-asym", "int3-oc-g64", "int3-oc-g64-asym", "fp8e4m3", "fp8e5m2", "fp8e4m3-ic-g128",
                 "bcq2-oc-g64", "bcq3-oc-g128", "bcq4-oc-g128")


def weight_format_table(formats=TABLE_FORMATS) -> str:
    """docs/numerics.md's weight-format table: for each format, the error of the embedded model's quantized
    weights against their float values (float64 arithmetic; RTN, BCQ greedy), and the HBM bytes per weight with
    every overhead (descriptor, scale blocks, zero points, padding: `dfx.formats.matrix_bytes`) for the embedded
    model at the tiny and dfx configs and for GPT-2 1.5B at dfx."""
    model = load_default()
    ws = {n: p.detach().double().numpy() for n, p in model.named_parameters()
          if n.endswith(".weight") and any(x in n for x in ("c_attn", "c_proj", "c_fc"))}
    shapes = [w.shape for w in ws.values()]
    big = named_config("1.5B")
    e = big.n_embd
    big_shapes = [(e, 3 * e), (e, e), (e, 4 * e), (4 * e, e)] * big.n_layer

    def per_weight(fmt, shp, cfg):
        return sum(F.matrix_bytes(fmt, k, n, cfg.d, cfg.l) for k, n in shp) / sum(k * n for k, n in shp)

    rows = ["| format | rel. RMS error | max abs error / max abs weight | SQNR (dB) | bytes/weight, ideal | "
            "embedded @ tiny | embedded @ dfx | GPT-2 1.5B @ dfx |", "|---|---|---|---|---|---|---|---|"]
    for name in formats:
        f = F.parse(name)
        num = den = 0.0
        worst = 0.0
        for w in ws.values():
            dq = quantize_weight(w.astype(np.float32), f, "rtn").dequant().astype(np.float64)
            num += ((w - dq) ** 2).sum()
            den += (w ** 2).sum()
            worst = max(worst, float(np.abs(w - dq).max() / np.abs(w).max()))
        ideal = sum(f.ideal_bytes(k, n) for k, n in shapes) / sum(k * n for k, n in shapes)
        rows.append(f"| {name} | {np.sqrt(num / den):.2e} | {worst:.2e} | {10 * np.log10(den / num):.1f} | "
                    f"{ideal:.4f} | {per_weight(f, shapes, PRESETS['tiny']):.4f} | "
                    f"{per_weight(f, shapes, PRESETS['dfx']):.4f} | {per_weight(f, big_shapes, PRESETS['dfx']):.4f} |")
    return "\n".join(rows)
