"""`dfx compare`: two rungs of the reference ladder side by side (the logic is `dfx.host.compare`)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from dfx.compiler import compile_model
from dfx.errors import UsageError
from dfx.host import compare as cmp
from dfx.models import checkpoint
from dfx.models.tokenizer import load_tokenizer, tokenizer_from_json
from dfx.program import load_program

from .options import backend_opts, friendly


def _shown(tok, t: int) -> str:
    return f"{tok.decode([t])!r} ({t})"


def report(c: cmp.Comparison, tok) -> list[str]:
    """The comparison as lines: one per step, then the first divergence, the largest difference, the verdict."""
    lines = [f"{'step':>4}  {c.reference + ' token':<22}{c.tested + ' token':<22}{'ref margin':>11}"
             f"{'max |dlogit|':>14}{'bound':>10}"]
    for i, s in enumerate(c.steps):
        mark = "  mismatch" if s.mismatch else "  near-tie" if s.tie else ""
        lines.append(f"{i:>4}  {_shown(tok, s.ref_token):<22}{_shown(tok, s.got_token):<22}{s.margin:>11.5f}"
                     f"{s.max_diff:>14.5f}{s.bound:>10.5f}{mark}")
    k = c.first_divergence
    if k is None:
        lines.append(f"tokens: all {len(c.steps)} agree")
    else:
        s = c.steps[k]
        lines.append(f"first divergence: step {k}: {c.reference} {_shown(tok, s.ref_token)}, {c.tested} "
                     f"{_shown(tok, s.got_token)}; {c.reference}'s top-2 margin {s.margin:.6g}")
    if c.steps:
        j = c.largest
        lines.append(f"largest logit difference: {c.steps[j].max_diff:.6g} at step {j} (bound {c.steps[j].bound:.6g}"
                     + (": 0.5% of the float logits' range, docs/numerics.md)" if c.reference == "golden" else
                        ": the datapath is bit-exact to the simulator)"))
    if c.verdict == "near-tie":
        lines.append(f"verdict: near-tie: the reference's top-2 margin {c.steps[k].margin:.6g} is within twice the "
                     f"error bound ({2 * c.steps[k].bound:.6g}) and every logit is within the bound")
    elif c.verdict == "mismatch":
        m = c.steps[c.first_mismatch]
        why = (f"tokens differ with margin {m.margin:.6g} > {2 * m.bound:.6g}" if m.diverges and not m.tie
               else f"logits differ by {m.max_diff:.6g} > bound {m.bound:.6g}")
        lines.append(f"verdict: MISMATCH at step {c.first_mismatch}: {why}")
        lines.append(f"first differing instruction: {c.instruction}" if c.instruction
                     else f"first differing instruction: not found ({c.bisect_note})")
    else:
        lines.append("verdict: agree")
    return lines


@click.command("compare")
@click.argument("source", metavar="PROGRAM|MODEL", required=False)
@click.option("--prompt", "-p", required=True, help="text to continue")
@click.option("--backend", type=click.Choice(list(cmp.TESTED)), default="sim", show_default=True,
              help="the rung under test")
@click.option("--against", type=click.Choice(list(cmp.REFERENCES)), default="golden", show_default=True,
              help="the reference rung: golden (float32 PyTorch) or sim (the bit-exact simulator)")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="for a PROGRAM: the checkpoint it was compiled from (the golden rung, and a fresh compile for "
                   "the bisection)")
@click.option("--config", "config", default="tiny", show_default=True, help="for a MODEL: accelerator config")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="for a MODEL: FPGAs in the ring")
@click.option("--max-new-tokens", "-n", type=click.IntRange(min=1), default=32, show_default=True,
              help="tokens to compare")
@click.option("--xclbin", type=click.Path(path_type=Path), default=None, envvar="DFX_XCLBIN",
              help="--backend pynq: the xclbin of `dfx build --board u280`")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="seconds per token step (sim, pynq)")
@friendly
def compare(source, prompt, backend, against, model, config, devices, max_new_tokens, xclbin, timeout):
    """Run two rungs side by side, token by token: the reference (--against) decodes greedily and the tested
    rung (--backend) is fed the same tokens. Prints each step's tokens, the reference's top-2 margin and the
    largest logit difference; a divergence within the documented error bound is a near-tie, anything else a
    mismatch, with the first instruction whose result differs. Exit 1 only on a real mismatch.

    PROGRAM|MODEL: a compiled .dfx, or a checkpoint directory (default: the embedded model), compiled here."""
    if not prompt:
        raise UsageError("the prompt is empty; give some text to continue")
    src = Path(source) if source else checkpoint.DEFAULT_MODEL_DIR
    net = fresh = None
    if src.is_dir():
        if model is not None:
            raise UsageError("--model is for a PROGRAM; a MODEL directory is its own float model")
        net = checkpoint.load_checkpoint(src)
        prog = compile_model(net, config, devices=devices)
        tok = load_tokenizer(src, net.config.vocab_size)
    else:
        if devices != 1:
            raise UsageError("--devices is for a MODEL; a PROGRAM was compiled for its own device count")
        prog = load_program(src)
        tok = tokenizer_from_json(prog.tokenizer_json, prog.symbols.vocab_size)
        if model is not None:
            net = checkpoint.load_checkpoint(model)
            fresh = cmp.fresh_compile(prog, net)
    opts = backend_opts(backend, xclbin, timeout, False) if backend != "rtl" else None
    if backend == "rtl":
        click.echo("[compare] building and simulating the core for the tested rung (minutes on Icarus)", err=True)
    c = cmp.compare(prog, tok.encode(prompt), max_new_tokens, tested=backend, reference=against, net=net,
                    fresh=fresh, backend_opts=opts)
    for line in report(c, tok):
        click.echo(line)
    sys.exit(1 if c.verdict == "mismatch" else 0)
