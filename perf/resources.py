"""A first-order DSP estimate of the datapath against the board's budget (the Yosys figures of docs/rtl.md
replace it where they exist)."""
from __future__ import annotations

from dfx.config import AccelConfig

from .board import Board, load_board


def estimate_resources(cfg: AccelConfig, board: str | Board | None = "u280") -> dict:
    """First-order DSP estimate of the datapath (MPU: l lanes x (d multipliers + d-1 tree adders + an
    accumulator and a bias adder); VPU: vpu_width x (adder + multiplier) + a d-input reduction tree) against
    the board's DSP budget."""
    b = load_board(board)
    mul, add = b.value("resources", "dsp_per_fp16_mul"), b.value("resources", "dsp_per_fp_add")
    mpu = cfg.l * (cfg.d * mul + (cfg.d - 1) * add + 2 * add)
    vpu = cfg.vpu_width * (add + mul) + (cfg.d - 1) * add
    total = mpu + vpu
    budget = b.value("resources", "DSP") * b.value("resources", "usable_fraction")
    return {"dsp": total, "dsp_mpu": mpu, "dsp_vpu": vpu, "dsp_budget": budget,
            "dsp_total": b.value("resources", "DSP"), "fits": total <= budget}
