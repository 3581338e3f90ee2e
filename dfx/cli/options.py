"""Options and helpers the `dfx` commands share: the one-line error path (`friendly`, `DfxGroup`), the
sampling/backend/weights options, and streaming generated text to stdout with timing on stderr."""
from __future__ import annotations

import errno
import functools
import math
import os
import sys
import time
import warnings
from pathlib import Path

import click

from dfx import progress
from dfx.errors import DfxError, UsageError
from dfx.formats import ACCEPTED, EXAMPLES, FormatError, parse
from dfx.host.device import DEFAULT_TIMEOUT_S
from dfx.host.rtl_session import RTL_TIMEOUT_S


def fail(msg: str):
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def show_warning(message, category, filename, lineno, file=None, line=None):
    """dfx's own warnings as one `warning:` line on stderr; third-party ones (pynq's "no devices", ...) dropped."""
    if category.__module__.split(".")[0] == "dfx":
        click.echo(f"warning: {message}", err=True)


class DfxGroup(click.Group):
    """The `dfx` group: click's usage errors (unknown option, missing argument, bad value or choice) as one
    `error: ... (see dfx CMD --help)` line with exit code 2, instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show_warning
            try:
                rv = super().main(args, prog_name, complete_var, False, **extra)
            except click.exceptions.NoArgsIsHelpError as e:       # `dfx` alone: the help, as click shows it
                e.show()
                sys.exit(e.exit_code)
            except click.UsageError as e:
                names, c = [], e.ctx                          # the command as the user types it: dfx CMD ...
                while c is not None and c.parent is not None:
                    names.append(c.info_name)
                    c = c.parent
                where = " ".join(["dfx", *reversed(names)])
                fail(f"{' '.join(e.format_message().split())} (see {where} --help)")
            except click.ClickException as e:
                fail(" ".join(e.format_message().split()))
            except (click.Abort, KeyboardInterrupt, EOFError):
                fail("interrupted")
            except OSError as e:
                if e.errno != errno.EPIPE:                   # stdout closed early (`dfx disasm | head`): quiet
                    raise
                sys.stderr = open(os.devnull, "w")            # noqa: SIM115 - nothing more can be shown
                sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def friendly(fn):
    """Turn DfxError (and a missing file) into `error: ...` + exit 2."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except DfxError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted")
    return wrapper


def stream_text(tok, ids_iter, head: str = "", first=None):
    """Print `head` (the prompt) once the first token has come (a run that fails before then writes nothing to
    stdout), then the tokens as they come; return the list of ids. `first()` is called just before."""
    dec = tok.stream_decoder()
    out = []
    for t in ids_iter:
        if not out:
            if first is not None:
                first()
            click.echo(head, nl=False)
        out.append(t)
        piece = dec.push(t)
        if piece:
            click.echo(piece, nl=False)
            sys.stdout.flush()
    if not out:
        click.echo(head, nl=False)
    click.echo(dec.flush() or "", nl=False)
    click.echo()
    return out


def sampling_options(fn):
    for opt in reversed([
        click.option("--max-new-tokens", "-n", type=click.IntRange(min=0), default=64, show_default=True,
                     help="tokens to generate"),
        click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy"),
        click.option("--top-k", type=int, default=0, show_default=True, help="sample from the k most likely (0: off)"),
        click.option("--top-p", type=float, default=1.0, show_default=True, help="nucleus sampling mass (1: off)"),
        click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
                     help="sampling seed (0..2**64-1)"),
        click.option("--max-repeat", type=click.IntRange(min=0), default=0, show_default=True, metavar="R",
                     help="never pick the same token more than R times in a row (0: off); stops a small model's "
                          "loops, e.g. the embedded byte model's runs of spaces"),
    ]):
        fn = opt(fn)
    return fn


def check_timeout(ctx, param, value):
    """--timeout, checked when parsed (before any work): a finite number of seconds > 0 (None: the backend's
    default)."""
    if value is None:
        return None
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a number of seconds > 0, not {value}")
    return value


def check_waves(ctx, param, value):
    """--waves FILE, checked when parsed (before any work): an .fst file in an existing, writable folder."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise click.BadParameter(f"{value} is a folder; give a file to write, e.g. {path / 'out.fst'}")
    if path.suffix != ".fst":
        raise click.BadParameter(f"{value}: the waveforms are FST; give a file ending .fst, e.g. out.fst")
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"{value}: {folder} {'is not a folder' if folder.exists() else 'does not exist'}; "
                                 "give a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{value}: the folder {folder} is not writable; give a file in a writable folder")
    return path


def backend_options(fn):
    for opt in reversed([
        click.option("--xclbin", type=click.Path(path_type=Path), default=None, envvar="DFX_XCLBIN",
                     show_envvar=True, help="xrt and pynq backends: the xclbin of `dfx build --board u280`"),
        click.option("--timeout", type=float, default=None, callback=check_timeout,
                     help=f"seconds to wait for the kernel's ap_done on each token step (the simulator keeps it "
                          f"too) [default: {DEFAULT_TIMEOUT_S:g}; rtl: {RTL_TIMEOUT_S:g}, wall time of the "
                          f"simulation]"),
        click.option("--stats", is_flag=True, help="print per-token latency and the kernels' cycle counters "
                                                    "(stderr)"),
        click.option("--waves", default=None, callback=check_waves, metavar="FILE.fst",
                     help="rtl backend: write the simulation's waveforms (FST: Icarus, or SIM=verilator) with the "
                          "PC and unit-busy signals named dbg_* at the top; open with gtkwave or surfer "
                          "(docs/dse.md, Timelines)"),
    ]):
        fn = opt(fn)
    return fn


def check_waves_backend(waves, backend) -> None:
    """--waves comes from the RTL simulation only."""
    if waves is not None and backend != "rtl":
        raise UsageError(f"--waves is for --backend rtl (the RTL simulation writes them), not {backend}")


def backend_opts(backend, xclbin, timeout, stats=True) -> dict:
    # the cycle counters are read after every step only for --stats (on `sim` they come from the perf model)
    opts = {"timeout": DEFAULT_TIMEOUT_S if timeout is None else timeout, "counters": bool(stats)}
    if backend in ("xrt", "pynq"):
        opts["xclbin"] = xclbin
    elif xclbin is not None:
        raise UsageError(f"--xclbin is for --backend xrt or pynq, not {backend}")
    return opts


def print_stats(sess, stats):
    if not stats:
        return
    s = sess.summary()
    bf = ", ".join(f"{u} {v:.0%}" for u, v in s["busy_fraction"].items())
    click.echo(f"[stats] {s['backend']} x{s['devices']}: first token {s['first_token_s'] * 1e3:.1f} ms, then "
               f"{s['token_s_mean'] * 1e3:.2f} ms/token (host wall); kernel cycles prefill {s['prefill_cycles']:,}, "
               f"decode {s['decode_cycles']:,} ({s['decode_ms_per_token_modelled']:.3f} ms/token at the core clock); "
               f"busy {bf}", err=True)


def generate_text(session_gen, prompt_ids, n, tok, label, seconds: float | None = None, head: str = "",
                  first=None):
    t0 = time.perf_counter()
    ids = stream_text(tok, session_gen, head, first)
    dt = time.perf_counter() - t0 if seconds is None else seconds
    rate = len(ids) / dt if dt else 0.0
    click.echo(f"[{label}] {len(prompt_ids)} prompt + {len(ids)} generated tokens in {dt:.2f} s "
               f"({f'{rate:.1f} tok/s' if rate >= 1 or not ids else f'{dt / len(ids):.1f} s/token'})", err=True)


def weights_option(fn):
    """--weights FMT, checked when parsed: an unknown name is one line listing the accepted forms, exit 2."""

    def check(ctx, param, value):
        try:
            return parse(value).name
        except FormatError as e:
            fail(f"--weights: {e}")

    return click.option("--weights", default="fp16", show_default=True, callback=check,
                        help=f"weight format: {ACCEPTED} (e.g. {', '.join(EXAMPLES[1:6])}); the linear (Conv1D) "
                             "weights, dequantised to FP16 in front of the MPU")(fn)




def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def session_text(sess, ids, n, samp, tok, label: str, head: str) -> None:
    """Generate on an open Session, streaming the text to stdout. A progress bar on stderr (`dfx.progress`)
    counts token steps with the kernel's cycles per second: until the first token when stdout is a terminal
    (the streamed text is the progress after that), else to the end."""
    steps = progress.StepBar(f"[{label}] tokens", len(ids) + n - 1)
    sess.on_step = steps.run

    def tokens():
        yield from sess.generate(ids, n, samp)
        steps.close()                                   # before the summary line
    try:
        generate_text(tokens(), ids, n, tok, label, head=head, first=steps.close if _stdout_is_terminal() else None)
    finally:
        steps.close()
        sess.on_step = None
