"""The saving of cached real-image features: the same FID evaluation run twice.

Uses the standard FID Inception weights (run `ganforge inception-weights` first) on N phantom
images at 64×64 against N others; the second run reads the real set's features from the cache.

    .venv/bin/python benchmarks/fid_cache.py [N]
"""

import os
import sys
import tempfile
import time

import torch
from ganforge_plugins.metrics import FID
from ganforge_plugins.phantom import render_phantoms

from ganforge.evaluation import EvalContext
from ganforge.inception import resolve_weights

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
weights = resolve_weights()
if weights is None:
    sys.exit("no Inception weights: run `ganforge inception-weights` first")
os.environ["GANFORGE_CACHE"] = tempfile.mkdtemp()
real, fake = render_phantoms(N, 64, seed=0)[0], render_phantoms(N, 64, seed=1)[0]
print(f"FID, {N} real vs {N} generated phantom images at 64×64, {torch.get_num_threads()} threads, CPU")
for label in ("first run (computes real features)", "second run (real features cached)"):
    start = time.perf_counter()
    fid = FID()(EvalContext(real, fake, inception_weights=weights))["fid"]
    print(f"{label:<40} {time.perf_counter() - start:6.1f} s   FID {fid:.3f}")
