"""One exception class per layer. Every message is one line that names what is wrong and what is accepted.

The CLI turns any `DfxError` into ``error: <message>`` on stderr and exit code 2, with no traceback.
"""


class DfxError(Exception):
    """Base of every error the user can cause with bad input."""


class CheckpointError(DfxError):
    """A model checkpoint (directory, config.json, weights, tokenizer) cannot be loaded."""


class ConfigError(DfxError, ValueError):
    """An `AccelConfig` or model config field is inconsistent or out of range."""


class EncodeError(DfxError, ValueError):
    """An instruction field does not fit its encoding, or a word does not decode."""


class RuleError(DfxError, ValueError):
    """An instruction breaks a rule of the ISA where it runs (an operand outside VBUF, a bad BATCH/CHUNK/SLOT);
    executors re-raise it as their own error with the device and PC (`dfx.isa`, "rules")."""


class ProgramError(DfxError):
    """A program container is truncated, corrupted, or built for another ISA/config."""


class CompileError(DfxError):
    """The compiler cannot lower a model; the message names the graph node and why."""


class SimError(DfxError):
    """The functional simulator stopped: the message names the device, PC and instruction."""


class PerfError(DfxError):
    """The performance model cannot run this program on this board (it does not fit, or is malformed)."""


class DeviceError(DfxError):
    """A host backend (sim, rtl, pynq) refused or failed an operation."""


class UsageError(DfxError):
    """Bad command-line or API argument (empty prompt, too many tokens, ...)."""
