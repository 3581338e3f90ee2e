"""Pipeline construction: timed values, stalling registers, ROMs, and the stream-in/stream-out unit base.

Every arithmetic unit in hw/ is a *stalling pipeline*: all of its registers advance together on one clock
enable `ce = ~o.valid | o.ready`, so a unit accepts one input per cycle (throughput 1) and holds its state
while the consumer applies backpressure. The datapath is written as a chain of functions on `T` values (an
Amaranth value plus the pipeline stage at which it is available); `Pipe.at` inserts the delay registers that
bring an older value forward, so side paths (a sign, an override, a bypass) stay aligned with the main path
without hand counting. The unit's latency is the stage of its result, read off the datapath itself.

Trade-off: one global enable (rather than a skid buffer per stage) keeps every stage register a plain
clock-enabled flip-flop (an FDRE on UltraScale+) and costs one combinational path from `o.ready` to
`i.ready`; a consumer that needs it registered puts a `stream` FIFO behind the unit.
"""
# (no `from __future__ import annotations`: Amaranth reads the signature annotations)

from amaranth import Const, Module, Signal, Value, ValueCastable
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


# The top's stages under the deep pipeline profile (`dfx.config.pipeline_profile`): a pipelined reset and two
# register stages on every HBM channel (a full slice at the port, a forward one toward the core: `hw.top.Top`);
# the values tests/hw/test_top.py runs.
DEEP_TOP = dict(reset_stages=3, hbm_slr_stages=2)


class T:
    """A value available from pipeline stage `t` on (stage 0 = the unit's input)."""
    __slots__ = ("v", "t")

    def __init__(self, v, t: int):
        self.v, self.t = (v if isinstance(v, ValueCastable) else Value.cast(v)), t

    def __repr__(self):
        return f"T({self.v!r}, t={self.t})"


class Pipe:
    """Registers, delay lines and ROM reads of one stalling pipeline (all clock-enabled by `ce`)."""

    def __init__(self, m: Module, ce, domain: str = "sync"):
        self.m, self.ce, self.domain = m, ce, domain
        self._delays: dict = {}
        self._n = 0
        self.roms: list[Memory] = []                     # every ROM built, for inspection

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def reg(self, v, name: str = "r"):
        """One pipeline register on `v` (clock-enabled, no reset: datapath registers need none)."""
        if not isinstance(v, ValueCastable):
            v = Value.cast(v)
        s = Signal(v.shape(), name=self._name(name), reset_less=True)
        with self.m.If(self.ce):
            self.m.d[self.domain] += s.eq(v)
        return s

    def flag(self, v, n: int, name: str = "v"):
        """1-bit `v` delayed by `n` clock-enabled registers *with* reset (valid bits: a reset mid-run must
        clear them, unlike the data registers)."""
        for _ in range(n):
            r = Signal(name=self._name(name))
            with self.m.If(self.ce):
                self.m.d[self.domain] += r.eq(v)
            v = r
        return v

    def comb(self, v, name: str = "w"):
        """`v` as a named combinational signal. Used for every intermediate that feeds more than one place:
        Amaranth's Python simulator does not share common subexpressions, so without it nested uses grow
        exponentially; the netlist is the same either way."""
        if not isinstance(v, ValueCastable):
            v = Value.cast(v)
        s = Signal(v.shape(), name=self._name(name))
        self.m.d.comb += s.eq(v)
        return s

    def at(self, x, t: int):
        """The value of `x` as seen at stage `t` (delayed by registers as needed). Constants and plain
        values are taken as available at every stage."""
        if not isinstance(x, T):
            return x if isinstance(x, ValueCastable) else Value.cast(x)
        if x.t > t:
            raise ValueError(f"a value from stage {x.t} is needed at earlier stage {t}")
        key = (id(x.v), x.t)
        chain = self._delays.setdefault(key, (x.v, [x.v]))[1]
        while len(chain) <= t - x.t:
            chain.append(self.reg(chain[-1], "dly"))
        return chain[t - x.t]

    def sync(self, *xs):
        """(stage, values): every input brought to the latest stage among them."""
        t = max((x.t for x in xs if isinstance(x, T)), default=0)
        return t, [self.at(x, t) for x in xs]

    def stages(self, n: int, order: tuple[int, ...]) -> "Cuts":
        """The register cuts of one operator: `order` lists its cut points by priority; the first `n` get
        registers."""
        if not 0 <= n <= len(order):
            raise ValueError(f"stages must be 0..{len(order)}, not {n!r}")
        return Cuts(self, set(order[:n]))

    def rom(self, name: str, init, width: int, addrs):
        """Read a ROM (one read port per address; synchronous, enabled by `ce`): one pipeline stage.
        `addrs` are `T`s; returns one `T` per address."""
        t, avs = self.sync(*addrs)
        mem = Memory(shape=width, depth=len(init), init=[int(v) for v in init])
        self.m.submodules[self._name(name)] = mem
        mem._MustUse__silence = True                    # (also built by throwaway latency elaborations)
        self.roms.append(mem)
        out = []
        for a in avs:
            port = mem.read_port(domain=self.domain)
            self.m.d.comb += [port.addr.eq(a), port.en.eq(self.ce)]
            out.append(T(port.data, t + 1))
        return out


class Cuts:
    """Pipeline cut points inside one operator (see `Pipe.stages`)."""

    def __init__(self, pipe: Pipe, enabled: set[int]):
        self.pipe, self.enabled = pipe, enabled

    @property
    def latency(self) -> int:
        return len(self.enabled)

    def __call__(self, point: int, *values):
        """`values` registered if cut `point` is enabled, else unchanged (a tuple, or one value)."""
        if point in self.enabled:
            values = tuple(self.pipe.reg(v, f"c{point}") for v in values)
        return values[0] if len(values) == 1 else values


def check_stages(owner, **stages) -> None:
    """Validate operator stage counts given as name=(value, maximum), before a component's
    `super().__init__()`; the message names the parameter."""
    for name, (v, top) in stages.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            owner._MustUse__silence = True          # a refused component is not an unused one
            raise ValueError(f"{name} must be an integer 0..{top}, not {v!r}")


class PipelinedUnit(wiring.Component):
    """Base of the stream-in, stream-out arithmetic units.

    Subclasses set `in_shape` / `out_shape` before calling `__init__` and implement
    `datapath(p, payload: T) -> T`. `latency` (cycles from accepting an input to presenting its result) is
    measured by elaborating the datapath once; throughput is one result per cycle.
    """

    def __init__(self, in_shape, out_shape):
        self._in_shape, self._out_shape = in_shape, out_shape
        super().__init__({"i": In(stream.Signature(in_shape)), "o": Out(stream.Signature(out_shape))})
        self.latency = self._measure()

    def datapath(self, p: Pipe, x: T) -> T:
        raise NotImplementedError

    def _measure(self) -> int:
        m = Module()
        m._MustUse__silence = True                      # a throwaway elaboration
        p = Pipe(m, Const(1))
        x = Signal(self._in_shape)
        return max(self.datapath(p, T(x, 0)).t, 1)

    def elaborate(self, platform):
        m = Module()
        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        p = Pipe(m, ce)
        y = self.datapath(p, T(self.i.payload, 0))
        if y.t < 1:
            y = T(p.reg(y.v, "out"), y.t + 1)
        assert y.t == self.latency, (y.t, self.latency)
        valid = Signal(y.t, name="valid_pipe")          # valid[k]: stage k+1 holds an input
        with m.If(ce):
            m.d.sync += valid.eq((valid << 1) | self.i.valid)
        m.d.comb += [
            self.i.ready.eq(ce),
            self.o.valid.eq(valid[-1]),
            self.o.payload.eq(y.v),
        ]
        return m
