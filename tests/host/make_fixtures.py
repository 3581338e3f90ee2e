"""Regenerate tests/host/fixtures: a small random GPT-2 compiled for the tiny config (1 and 2 devices) and a
pynq-backend session on each, recorded against the simulator-backed fake pynq (`dfx.host.fakepynq`).

    .venv/bin/python tests/host/make_fixtures.py

Regenerate when the ISA, the program container or the host's call sequence changes on purpose; the replay
tests then show, call by call, what changed.
"""
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

MODEL = dict(n_embd=32, n_head=2, n_layer=2, n_positions=24, vocab_size=61)
PROMPT = [1, 2, 3, 4]
NEW = 6
SAMPLING = dict(temperature=0.9, top_k=12, seed=5)


def main():
    from gpt2_fixtures import make_hf_gpt2
    from dfx.compiler import compile_model
    from dfx.host.replay import record_session
    from dfx.program import save_program

    out = HERE / "fixtures"
    out.mkdir(exist_ok=True)
    model = make_hf_gpt2(3, **MODEL)
    for n in (1, 2):
        prog = out / f"tiny_{n}dev.dfx"
        save_program(compile_model(model, "tiny", devices=n), prog)
        info = record_session(prog, out / f"pynq_session_{n}dev.json", PROMPT, NEW, SAMPLING)
        print(f"{prog.name}: {info['calls']} calls, tokens {info['tokens']}, live buffers {info['live_buffers']}")


if __name__ == "__main__":
    main()
