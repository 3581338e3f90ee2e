"""Programs for the performance-model tests: shapes-only compiles of arbitrary GPT-2 hyper-parameters, and
programs written in assembly."""
from dfx import isa
from dfx.compiler import compile_model
from dfx.config import load_config
from dfx.manifest import HostSymbols, Manifest, ModelConfig, PrefillBatch, Quantization
from dfx.perf import PerfModel
from dfx.program import DeviceImage, Program

# a batched prefill run of up to 3 tokens: slot i's QK at POS + i, then one BATCH-fused LINEAR over COUNT vectors
BATCHED = """
    CHUNK addr=0 cap=3
    SLOT i=0 skip=5
    QK dst=100 src=0 k=8 +dyn_n
    SLOT i=1 skip=3
    QK dst=100 src=0 k=8 +dyn_n
    SLOT i=2 skip=1
    QK dst=100 src=0 k=8 +dyn_n
    BATCH src_stride=1 dst_stride=1 +dyn_m
    LINEAR dst=200 src=0 k=8 n=4
    HALT"""
SMALL = dict(vocab_size=500, n_positions=256, n_embd=256, n_layer=3, n_head=4, layer_norm_epsilon=1e-5)


def shapes(model: dict, config="tiny", devices=1, overlap=1, max_seq=None, prefill_batch=None) -> Program:
    """A shapes-only program for GPT-2 hyper-parameters (compile_model takes them as a dict)."""
    return compile_model(model, config, devices=devices, overlap=overlap, max_seq=max_seq,
                         prefill_batch=prefill_batch)


def hand(streams: list[str], config="tiny", n_layer=1, max_seq=64, batch: list[str] | None = None,
         cap: int = 0) -> Program:
    """A program from assembly text, one text per device (the same text for prefill and decode); `batch`: the
    texts of a prefill_batch stream taking up to `cap` tokens per run."""
    cfg = load_config(config)
    devs = [DeviceImage({"prefill": isa.assemble(t), "decode": isa.assemble(t)}, bytearray(), bytearray())
            for t in streams]
    n = len(devs)
    if batch:
        for dev, text in zip(devs, batch):
            dev.streams["prefill_batch"] = isa.assemble(text)
    manifest = Manifest(
        isa_version=isa.ISA_VERSION, config=cfg, devices=n, ring=tuple(range(n)), overlap=1, weights=False,
        model=ModelConfig(vocab_size=64, n_positions=max_seq, n_embd=64, n_layer=n_layer, n_head=1,
                          layer_norm_epsilon=1e-5),
        max_seq=max_seq, memory=(), streams=("prefill", "decode") + (("prefill_batch",) if batch else ()),
        symbols=HostSymbols(0, 64, tuple(((0, 64 // n),) for _ in range(n)),
                            PrefillBatch("prefill_batch", cap, 0) if batch else None),
        quantization=Quantization("fp16", "rtn", {}, {}, ({},) * n), tokenizer="bytes", node_pcs={})
    return Program(manifest, devs)


def cycles(prog, stream="decode", pos=0, board="u280", engines="pipelined"):
    """Cycles of one step; the by-hand tests count the pipelined units' costs unless they ask for the RTL's."""
    return PerfModel(prog, board, engines=engines).step_cycles(stream, pos)
