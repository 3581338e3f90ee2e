"""Symbol names and tables (dfx.symbols): one name builder, one place per name, lookups that name the nearest
known symbols."""
import pytest

from dfx.errors import CompileError
from dfx.symbols import LOGITS, Kind, Space, Symbol, SymbolTable, sym_name


def test_sym_name():
    assert sym_name("h.0.attn.c_attn", Kind.WEIGHT, 2) == "h.0.attn.c_attn.w2"
    assert sym_name("h.1.attn", Kind.KCACHE, 0) == "h.1.attn.k0"
    assert sym_name("h.1.attn", Kind.SCORE, 1) == "h.1.attn.s1"
    assert sym_name("h.0.ln_1", Kind.GAMMA) == "h.0.ln_1.gamma"
    with pytest.raises(TypeError, match="kind WEIGHT takes an index"):
        sym_name("lm_head", Kind.WEIGHT)
    with pytest.raises(TypeError, match="kind BIAS takes no index"):
        sym_name("h.0.mlp.c_fc", Kind.BIAS, 0)
    with pytest.raises(TypeError, match="not a dfx.symbols.Kind"):
        sym_name("embed", "wte")


def test_table_places_once_and_looks_up():
    t = SymbolTable(Space.DDR)
    s = t.place(LOGITS, 128, 512)
    assert s == Symbol(LOGITS, Space.DDR, 128, 512) and t[LOGITS] is s and t.address(LOGITS) == 128
    assert LOGITS in t and len(t) == 1 and list(t) == [s]
    assert t.to_obj() == {LOGITS: [128, 512]}
    with pytest.raises(CompileError, match=r"DDR symbol 'logits' is placed twice \(at 128 and 0\)"):
        t.place(LOGITS, 0, 8)
    assert SymbolTable(Space.DDR, [Symbol("a", Space.DDR, 0, 1), s]) == SymbolTable(Space.DDR, [s, Symbol(
        "a", Space.DDR, 0, 1)])                                     # equality ignores placement order


def test_unknown_symbol_names_the_nearest():
    t = SymbolTable(Space.HBM)
    for p in range(3):
        t.place(sym_name("h.0.mlp.c_fc", Kind.WEIGHT, p), 64 * p, 4096)
    with pytest.raises(CompileError, match=r"^unknown HBM symbol 'h\.0\.mlp\.c_fc\.w3'; nearest known: "
                                           r"h\.0\.mlp\.c_fc\.w2, h\.0\.mlp\.c_fc\.w1, h\.0\.mlp\.c_fc\.w0$"):
        t["h.0.mlp.c_fc.w3"]
    with pytest.raises(CompileError, match=r"^unknown HBM symbol 'embed\.wte'; no similar name among its 3 "
                                           r"symbols$"):
        t.address("embed.wte")
    with pytest.raises(CompileError, match=r"^unknown VBUF symbol 'x0'; the table is empty$"):
        SymbolTable(Space.VBUF)["x0"]
