"""Whole pynq-backend sessions recorded and replayed (`dfx.host.recording` records the PYNQ calls): record a
session on emulated cards (`host/fakepynq.py`), or replay a recording strictly through the same host code.

    python -m dfx.host.replay record PROGRAM -o session.json --prompt-ids 1,2,3 -n 8
    python -m dfx.host.replay replay PROGRAM session.json
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dfx.program import load_program

from .fakepynq import FakePynq, write_fake_xclbin
from .recording import Recorder, ReplayMismatch, ReplayPynq
from .sampling import Sampling
from .session import Session


def record_session(program_path, out, prompt: list[int], max_new_tokens: int, sampling: dict | None = None,
                   xclbin_dir=None, **fake_kw) -> dict:
    """Run the pynq backend on `FakePynq` (emulated cards) and record every PYNQ call to `out`."""
    prog = load_program(program_path)
    d = Path(xclbin_dir or tempfile.mkdtemp(prefix="dfx-xclbin-"))
    xclbin = write_fake_xclbin(d / "dfx_u280.xclbin", prog.config)
    fake = FakePynq(prog.n_devices, program=prog, **fake_kw)
    rec = Recorder(fake, out, program=Path(program_path).name, xclbin=xclbin.name, prompt=prompt,
                   max_new_tokens=max_new_tokens, sampling=dict(sampling or {}))
    with Session(prog, "pynq", xclbin=xclbin, pynq=rec) as s:
        tokens = list(s.generate(prompt, max_new_tokens, Sampling(**(sampling or {}))))
    rec.meta["tokens"] = tokens
    rec.save()
    return {"tokens": tokens, "calls": len(rec.calls), "live_buffers": fake.live_buffers()}


def replay_session(program_path, recording, xclbin_dir=None) -> list[int]:
    """Replay a recording: the same host code, a strict fake pynq; returns the generated tokens."""
    prog = load_program(program_path)
    fake = ReplayPynq(recording)
    d = Path(xclbin_dir or tempfile.mkdtemp(prefix="dfx-xclbin-"))
    xclbin = d / fake.doc["xclbin"]
    xclbin.write_bytes(b"replayed: the recording answers for the card")
    with Session(prog, "pynq", xclbin=xclbin, pynq=fake) as s:
        tokens = list(s.generate(fake.doc["prompt"], fake.doc["max_new_tokens"],
                                 Sampling(**fake.doc.get("sampling", {}))))
    fake.done()
    if tokens != fake.doc["tokens"]:
        raise ReplayMismatch(f"replayed tokens {tokens} differ from the recorded {fake.doc['tokens']}")
    return tokens


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dfx.host.replay", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record a pynq session on emulated cards")
    r.add_argument("program")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--prompt-ids", default="1,2,3")
    r.add_argument("-n", "--max-new-tokens", type=int, default=8)
    q = sub.add_parser("replay", help="replay a recording strictly")
    q.add_argument("program")
    q.add_argument("recording")
    a = p.parse_args(argv)
    if a.cmd == "record":
        info = record_session(a.program, a.output, [int(x) for x in a.prompt_ids.split(",")], a.max_new_tokens)
        print(f"recorded {info['calls']} calls to {a.output}; tokens {info['tokens']}")
    else:
        print(f"replayed: tokens {replay_session(a.program, a.recording)}")


if __name__ == "__main__":
    main()
