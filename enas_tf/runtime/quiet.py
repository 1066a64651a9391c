"""TensorFlow's start-up chatter filtered out of stderr (no TensorFlow).

TensorFlow 2.16+ logs from C++ through absl logging, which writes straight to
file descriptor 2 until it is initialised (TensorFlow never initialises it)
and ignores TF_CPP_MIN_LOG_LEVEL. On a CPU machine every tool would print
TensorFlow's CUDA probe (`Could not find cuda drivers`, `failed call to
cuInit: ... UNKNOWN ERROR (303)`) and its oneDNN notices, which newcomers
read as failures. `filter_stderr()` routes file descriptor 2 through a pipe
whose reader drops exactly those known lines (`is_noise`) and forwards
everything else unchanged and at once: Python warnings and tracebacks, absl
logging, TensorFlow's real warnings and errors.

The tools start it (`enas_tf.runtime.cli.run`) unless the user set
TF_CPP_MIN_LOG_LEVEL, i.e. asked for TensorFlow's own logs.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Whole lines TensorFlow prints on start-up or on its first ops that say
# nothing about the run: the absl pre-initialisation notice, the CUDA probe
# of a machine without a GPU, oneDNN and CPU-instruction notices, the
# duplicate-registration notices of CUDA plugins.
_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR"
    rb"|[IWE]\d{4} [^\]]*\] ("
    rb"oneDNN custom operations are on"
    rb"|Could not find cuda drivers"
    rb"|failed call to cuInit"
    rb"|oneDNN supports DT_\w+ only on platforms with"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|TF-TRT Warning: Could not find TensorRT"
    rb"|kernel driver does not appear to be running on this host"
    rb"|retrieving CUDA diagnostic information for host"
    rb"|hostname: "
    rb")"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$)"
)
# A partial line that may become a noise line: held until its end.
_MAYBE_NOISE = re.compile(rb"^([IWE]\d|WARNING: All|To enable)")


def is_noise(line: bytes) -> bool:
    """Whether a line of stderr (without its newline) is known chatter."""
    return _NOISE.match(line) is not None


class StderrFilter:
    """File descriptor 2 through a pipe and a reader thread that drops
    `is_noise` lines (see the module docstring). `stop` restores it."""

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self._saved = os.dup(fd)
        read, write = os.pipe()
        sys.stderr.flush()
        os.dup2(write, fd)
        os.close(write)
        self._read = read
        self._thread = threading.Thread(target=self._pump, name="stderr-filter", daemon=True)
        self._thread.start()

    def _forward(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self._saved, data) :]
            except InterruptedError:
                continue
            except OSError:
                return  # the real stderr is gone; drop, never block the writers

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._forward(b"".join(line + b"\n" for line in lines if not is_noise(line)))
            if pending and not _MAYBE_NOISE.match(pending):
                self._forward(pending)  # a prompt or progress bar: at once
                pending = b""
        if pending and not is_noise(pending):
            self._forward(pending)
        os.close(self._read)

    def stop(self) -> None:
        """Restores file descriptor 2 and forwards what is left."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, self.fd)  # closes the pipe's write end: EOF
        self._thread.join(timeout=2.0)
        os.close(self._saved)


def filter_stderr() -> StderrFilter | None:
    """Starts filtering stderr for the rest of the process (stopped at
    exit), unless TF_CPP_MIN_LOG_LEVEL is set (the user wants TensorFlow's
    logs) or TensorFlow is already imported; then sets TF_CPP_MIN_LOG_LEVEL
    to 2 (no INFO or WARNING from the C++ logging once initialised)."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return None
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        quiet = StderrFilter()
    except OSError:
        return None
    atexit.register(quiet.stop)
    return quiet


__all__ = ["StderrFilter", "filter_stderr", "is_noise"]
