"""Weight quantizers, one module per method. Each returns `dfx.formats.QuantWeight`s whose `dequant()` is the
exact binary16 matrix the MPU multiplies with (and the fake-quant golden model's weight)."""
