"""How well the phantom analyser reads each phantom version: agreement with the drawn labels.

3,000 held-out phantoms per version (prevalence 0.25, a seed no calibration used), measured at
64×64 with the shipped thresholds of that version (docs/pggan.md has the table).

    .venv/bin/python benchmarks/analyser_agreement.py [N]
"""

import sys

from ganforge_plugins.phantom import FINDINGS, VERSIONS, render_phantoms
from ganforge_plugins.phantom_analysis import PhantomAnalyser

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
print(f"{N} held-out phantoms per version, prevalence 0.25, seed 424243, 64×64")
for version in VERSIONS:
    images, labels = render_phantoms(N, 64, seed=424243, prevalence=0.25, version=version)
    measured = PhantomAnalyser(version=version)(images).bool()
    cells = []
    for k, name in enumerate(FINDINGS):
        y, p = labels[:, k].bool(), measured[:, k]
        agree, sens, spec = (p == y).float().mean(), p[y].float().mean(), (~p[~y]).float().mean()
        cells.append(f"{name} {100 * agree:.1f} % (sens {100 * sens:.0f} %, spec {100 * spec:.0f} %)")
    print(f"v{version}: " + "; ".join(cells))
