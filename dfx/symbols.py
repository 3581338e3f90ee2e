"""Symbols: where the compiler placed each named datum of a device (docs/design.md, contract 4).

A `Symbol` is a name, the memory space it lives in, its address and its length:

    VBUF  address and length in entries of d elements
    DDR   address and length in bytes
    HBM   address in 64-byte units (`isa.HBM_UNIT`, the unit of the MATRIX and DMA `w`/`addr` fields), length
          in bytes

A `SymbolTable` holds the symbols of one space of one device. The allocator fills it (`compiler.allocate`); the
lowering and the image builder look symbols up in it, and the program manifest records the DDR and HBM tables of
every device. Every name of a node's datum is made by `sym_name` (`<node>.<kind>[<index>]`); the other names are
`LOGITS`, `PREFILL_TOKENS` and, in VBUF, the graph's value names. A lookup of an unknown name is a
`CompileError` naming the symbol and the nearest known ones.
"""
from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import CompileError

LOGITS = "logits"                   # DDR: the decode stream's FP16 logits
PREFILL_TOKENS = "prefill_tokens"   # DDR: the batched prefill's token table (u32 COUNT, then the tokens)


class Space(enum.Enum):
    VBUF = "vbuf"
    DDR = "ddr"
    HBM = "hbm"


class Kind(enum.Enum):
    """What a node-owned symbol holds; the value is the name's suffix."""
    WTE = "wte"          # embed: token embedding table (DDR)
    WPE = "wpe"          # embed: position embedding table (DDR)
    POS = "pos"          # embed: the position row (VBUF)
    GAMMA = "gamma"      # layernorm: scale (DDR; VBUF while the node runs)
    BETA = "beta"        # layernorm: shift (DDR; VBUF while the node runs)
    BIAS = "bias"        # linear: bias (DDR; VBUF while the node runs)
    SCORE = "s"          # attention: score buffer i (VBUF; two, alternating between heads)
    WEIGHT = "w"         # linear/lm_head: weight piece p (HBM)
    KCACHE = "k"         # attention: K cache of head h (HBM)
    VCACHE = "v"         # attention: V cache of head h (HBM)


INDEXED = frozenset({Kind.SCORE, Kind.WEIGHT, Kind.KCACHE, Kind.VCACHE})


def sym_name(node: str, kind: Kind, index: int | None = None) -> str:
    """The symbol name of `node`'s datum `kind` (indexed kinds take the piece, head or buffer index)."""
    if not isinstance(kind, Kind):
        raise TypeError(f"symbol kind {kind!r} is not a dfx.symbols.Kind")
    if (index is not None) != (kind in INDEXED):
        raise TypeError(f"symbol kind {kind.name} takes {'an' if kind in INDEXED else 'no'} index, got {index!r}")
    return f"{node}.{kind.value}" + ("" if index is None else str(int(index)))


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    space: Space
    address: int
    length: int


class SymbolTable:
    """The symbols of one memory space, in placement order (equality ignores the order)."""

    __slots__ = ("space", "_syms")

    def __init__(self, space: Space, symbols: Iterable[Symbol] = ()):
        self.space = space
        self._syms: dict[str, Symbol] = {}
        for s in symbols:
            self.place(s.name, s.address, s.length)

    def place(self, name: str, address: int, length: int) -> Symbol:
        """Record `name` at `address`; a name can be placed once."""
        if name in self._syms:
            raise CompileError(f"{self.space.name} symbol {name!r} is placed twice (at {self._syms[name].address} "
                               f"and {address}); every symbol has one place")
        s = self._syms[name] = Symbol(name, self.space, int(address), int(length))
        return s

    def __getitem__(self, name: str) -> Symbol:
        try:
            return self._syms[name]
        except KeyError:
            near = difflib.get_close_matches(name, self._syms, n=3, cutoff=0.6)
            hint = (f"nearest known: {', '.join(near)}" if near else
                    f"no similar name among its {len(self._syms)} symbols" if self._syms else "the table is empty")
            raise CompileError(f"unknown {self.space.name} symbol {name!r}; {hint}") from None

    def address(self, name: str) -> int:
        return self[name].address

    def __contains__(self, name: object) -> bool:
        return name in self._syms

    def __iter__(self) -> Iterator[Symbol]:
        return iter(self._syms.values())

    def __len__(self) -> int:
        return len(self._syms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolTable) and self.space is other.space and self._syms == other._syms

    __hash__ = None  # type: ignore[assignment]  (mutable while the allocator fills it)

    def __repr__(self) -> str:
        return f"SymbolTable({self.space.name}, {len(self)} symbols)"

    def to_obj(self) -> dict[str, list[int]]:
        """{name: [address, length]} in placement order (the manifest's form; see `dfx.manifest`)."""
        return {s.name: [s.address, s.length] for s in self._syms.values()}
