"""Run ``ganforge ARGS`` in this process and SIGKILL it at an exact moment of writing files.

``python killer.py N WHEN ARGS...``: the process kills itself at the N-th file write, where WHEN is
``before`` (the temporary file is complete, not yet renamed), ``after`` (just renamed) or ``torn``
(a safetensors file half-written, as with a full disk). Used by the crash-safety tests.
"""

import os
import signal
import sys

import safetensors.torch

import ganforge.checkpoint as checkpoint
from ganforge.cli import main

target, when = int(sys.argv[1]), sys.argv[2]
count = 0
real_replace, real_save_file = os.replace, safetensors.torch.save_file


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def replace(src, dst):
    global count
    count += 1
    if count == target and when == "before":
        _die()
    real_replace(src, dst)
    if count == target and when == "after":
        _die()


def save_file(tensors, filename, metadata=None):
    real_save_file(tensors, filename, metadata=metadata)
    if count + 1 == target and when == "torn":
        with open(filename, "r+b") as handle:
            handle.truncate(os.path.getsize(filename) // 2)
        _die()


os.replace = replace
checkpoint.save_file = save_file
sys.argv = ["ganforge", *sys.argv[3:]]
main()
