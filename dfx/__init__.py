"""dfx: toolflow for DFX-style multi-FPGA GPT-2 accelerators."""
__version__ = "0.1.0"
