"""Weight quantizers, one module per method. Each returns `dfx.formats.QuantWeight`s whose `dequant()` is the
exact binary16 matrix the MPU multiplies with (and the fake-quant golden model's weight).

    methods   method names, the formats each takes, argument checks
    rtn, bcq, gptq, adadim    the per-matrix methods;  weight: `quantize_weight`, their dispatch
    calib     calibration statistics (layer Hessians);  mixed: per-layer formats under a bit budget
    model     `quantize_model`: every Conv1D of a GPT-2;  table: docs/numerics.md's weight-format table
    report_cli  `dfx quant-report`
"""
