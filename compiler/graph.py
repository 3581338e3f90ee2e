"""The compiler's graph IR: one GPT-2 token step as a list of nodes over named vectors.

The IR is deliberately small. A `Graph` is a topologically ordered list of `Node`s; every node reads named
vectors (`inputs`) and writes one (`output`); `values` maps each vector name to its length in elements.
Parameters (weights, biases, LayerNorm scale/shift, embedding tables) hang off the node that uses them, as numpy
arrays, or as `Shape` placeholders when compiling from a config alone (no weights). After the `quantize` pass a
linear weight in a quantized format is a `dfx.formats.QuantWeight` (in the padded coordinates) and
`attrs["wformat"]` holds every linear's `WeightFormat`.

Ops (one decoder step for the token in register TOKEN at position POS):

    embed        ()         -> x      params wte (V, E), wpe (P, E)
    layernorm    (x,)       -> y      params gamma (E,), beta (E,)         attrs eps
    linear       (x,)       -> y      params weight (K, N), bias (N,)      attrs act: None | "gelu",
                                                                         wformat (after `quantize`)
    attention    (qkv,)     -> y      attrs layer, n_head, head_dim, head_pad, max_seq
    add          (a, b)     -> y
    lm_head      (x,)       -> logits params weight (E, V)

`verify(graph)` checks the invariants; tests run it between passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dfx.errors import CompileError
from dfx.formats import FormatError, QuantWeight

OPS = ("embed", "layernorm", "linear", "attention", "add", "lm_head")


@dataclass(frozen=True)
class Shape:
    """A parameter known only by its shape (compiling from a named config, without weights)."""
    shape: tuple[int, ...]

    @property
    def ndim(self):
        return len(self.shape)


def shape_of(p) -> tuple[int, ...]:
    return tuple(p.shape)


@dataclass
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    params: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __repr__(self):
        ps = ", ".join(f"{k}{list(shape_of(v))}" for k, v in self.params.items())
        return f"{self.output} = {self.op}({', '.join(self.inputs)}) [{self.name}] {ps} {self.attrs or ''}"


@dataclass
class Graph:
    model: dict                       # GPT-2 hyper-parameters (n_embd, n_head, n_layer, n_positions, vocab_size, eps)
    nodes: list[Node] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    has_weights: bool = True
    own_weights: bool = False         # the parameter arrays are the compiler's (a checkpoint it loaded): passes
                                      # may change them in place (never a caller's model)

    def add(self, node: Node, length: int) -> Node:
        self.nodes.append(node)
        self.values[node.output] = length
        return node

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producer(self, value: str) -> Node:
        for n in self.nodes:
            if n.output == value:
                return n
        raise KeyError(value)

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def __str__(self):
        return "\n".join(map(repr, self.nodes))


def _fail(node: Node, why: str):
    raise CompileError(f"node {node.name} ({node.op}): {why}")


def verify(g: Graph) -> Graph:
    """Check the IR's invariants; raise CompileError naming the node that breaks one."""
    defined: set[str] = set()
    outputs: set[str] = set()
    for n in g.nodes:
        if n.op not in OPS:
            _fail(n, f"unknown op; the IR has {', '.join(OPS)}")
        for i in n.inputs:
            if i not in defined:
                _fail(n, f"input {i!r} is used before it is defined")
        if n.output in outputs:
            _fail(n, f"output {n.output!r} is defined twice")
        if n.output not in g.values:
            _fail(n, f"output {n.output!r} has no length")
        outputs.add(n.output)
        defined.add(n.output)
        ln = [g.values[i] for i in n.inputs]
        out = g.values[n.output]
        for k, p in n.params.items():
            if isinstance(p, QuantWeight):
                if n.op != "linear" or k != "weight":
                    _fail(n, f"param {k} is quantized; only linear weights can be")
                if p.fmt != n.attrs.get("wformat"):
                    _fail(n, f"weight is {p.fmt.name} but attrs wformat is {n.attrs.get('wformat')}")
                try:
                    p.check()
                except FormatError as e:
                    _fail(n, f"quantized weight: {e}")
            elif g.has_weights and isinstance(p, np.ndarray):
                if p.dtype not in (np.float16, np.float32):
                    _fail(n, f"param {k} has dtype {p.dtype}; float16 or float32 expected")
                a = np.atleast_1d(p)
                rows = max(1, (1 << 20) // max(1, a[:1].nbytes))            # 1 MiB at a time: no whole-array temporary
                if not all(np.isfinite(a[i:i + rows]).all() for i in range(0, len(a), rows)):
                    _fail(n, f"param {k} has non-finite values")
            elif not isinstance(p, (np.ndarray, Shape)):
                _fail(n, f"param {k} is {type(p).__name__}, not an array")
        want = {
            "embed": lambda: shape_of(n.params["wte"])[1] == out == shape_of(n.params["wpe"])[1],
            "layernorm": lambda: ln[0] == out == shape_of(n.params["gamma"])[0] == shape_of(n.params["beta"])[0],
            "linear": lambda: shape_of(n.params["weight"]) == (ln[0], out)
            and ("bias" not in n.params or shape_of(n.params["bias"]) == (out,))
            and n.attrs.get("act") in (None, "gelu"),
            "attention": lambda: ln[0] == 3 * n.attrs["n_head"] * n.attrs["head_pad"]
            and out == n.attrs["n_head"] * n.attrs["head_pad"] and n.attrs["head_pad"] >= n.attrs["head_dim"],
            "add": lambda: len(ln) == 2 and ln[0] == ln[1] == out,
            "lm_head": lambda: shape_of(n.params["weight"]) == (ln[0], out),
        }[n.op]
        try:
            ok = want()
        except KeyError as e:
            _fail(n, f"missing param or attribute {e}")
        if not ok:
            _fail(n, f"shapes do not agree: inputs {ln}, output {out}, params "
                     f"{ {k: shape_of(v) for k, v in n.params.items()} }, attrs {n.attrs}")
    if not g.nodes or g.nodes[-1].op != "lm_head":
        raise CompileError("graph must end in an lm_head node")
    return g
