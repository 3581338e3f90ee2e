"""Overlap chosen per layer role by the performance model (dfx.perf.tune, `overlap="auto"`): never slower than
DFX's blocking sync, faster when the ring matters, the same program as blocking when nothing pays; the compiler
itself takes only concrete overlaps."""
import pytest

from dfx.compiler import compile_model
from dfx.compiler.partition import ROLES
from dfx.errors import CompileError
from dfx.perf import PerfModel, compile_tuned, load_board, tune_overlap

SMALL = dict(vocab_size=500, n_positions=128, n_embd=256, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)
WIDE = dict(SMALL, n_embd=512, n_head=8)


def streams(prog):
    return [img.streams for img in prog.devices]


@pytest.mark.parametrize("model,devices,link", [(SMALL, 2, None), (SMALL, 4, None), (WIDE, 4, None),
                                                (WIDE, 4, 0.5), (WIDE, 8, 2.0)])
def test_auto_never_slower_than_blocking(model, devices, link):
    board = load_board("u280", None if link is None else {"link.lane_rate_gbps": link})
    choice = tune_overlap(model, "tiny", devices, board=board)
    assert set(choice) == set(ROLES) and all(isinstance(s, int) and s >= 1 for s in choice.values())
    block = PerfModel(compile_model(model, "tiny", devices=devices, overlap=1), board)
    auto = PerfModel(compile_model(model, "tiny", devices=devices, overlap=choice), board)
    for pos in (0, 1, 40, 127):
        for stream in ("prefill", "decode"):
            assert auto.step_cycles(stream, pos) <= block.step_cycles(stream, pos), (stream, pos, choice)
    assert auto.run(16, 8).total_cycles <= block.run(16, 8).total_cycles


def test_auto_overlaps_when_the_ring_dominates():
    slow = load_board("u280", {"link.lane_rate_gbps": 0.5})
    choice = tune_overlap(WIDE, "tiny", 4, board=slow)
    assert max(choice.values()) > 1
    block = PerfModel(compile_model(WIDE, "tiny", devices=4, overlap=1), slow).step_cycles("decode", 64)
    auto = PerfModel(compile_model(WIDE, "tiny", devices=4, overlap=choice), slow).step_cycles("decode", 64)
    assert auto < block


def test_all_blocking_roles_give_the_blocking_program():
    blocking = compile_model(SMALL, "tiny", devices=4, overlap=1)
    same = compile_model(SMALL, "tiny", devices=4, overlap={r: 1 for r in ROLES})
    assert streams(same) == streams(blocking)
    one_role = compile_model(SMALL, "tiny", devices=4, overlap={"mlp.c_fc": 2})
    assert streams(one_role) != streams(blocking)


def test_compile_tuned_records_the_choice_for_its_board():
    slow = load_board("u280", {"link.lane_rate_gbps": 0.5})
    for board in ("u280", slow):
        want = tune_overlap(WIDE, "tiny", 4, board=board)
        prog = compile_tuned(WIDE, "tiny", devices=4, overlap="auto", board=board)
        assert prog.manifest.overlap == want
        assert streams(prog) == streams(compile_model(WIDE, "tiny", devices=4, overlap=want))
    assert tune_overlap(WIDE, "tiny", 1, board=slow) == {r: 1 for r in ROLES}      # nothing to gather
    same = compile_tuned(SMALL, "tiny", devices=2, overlap=2)                       # concrete: as given
    assert streams(same) == streams(compile_model(SMALL, "tiny", devices=2, overlap=2))


def test_compile_model_refuses_auto_in_one_line():
    with pytest.raises(CompileError, match=r"overlap 'auto' is chosen by the performance model: call "
                                           r"dfx\.perf\.compile_tuned") as e:
        compile_model(SMALL, "tiny", devices=2, overlap="auto")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("overlap,msg", [({"mlp.c_fx": 2}, "unknown layer role 'mlp.c_fx'; accepted"),
                                         ({"mlp.c_fc": 0}, "mlp.c_fc must be an integer >= 1"),
                                         (0, "must be an integer >= 1, not 0"),
                                         ("fast", "must be an integer >= 1, not 'fast'")])
def test_bad_overlap(overlap, msg):
    with pytest.raises(CompileError, match=msg):
        compile_model(SMALL, "tiny", devices=2, overlap=overlap)
