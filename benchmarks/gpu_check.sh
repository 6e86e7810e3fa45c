#!/usr/bin/env bash
# The CUDA path end to end, in under 8 minutes, on a lent GPU machine (or on this CPU with --cpu).
#
#   bash benchmarks/gpu_check.sh --prepare   # here, once: wheels the GPU image lacks (.whl/) and a
#                                            # half-precision copy of the FID Inception weights (.gpu/)
#   bash benchmarks/gpu_check.sh             # there: device run with carry [".whl", ".gpu"]
#   bash benchmarks/gpu_check.sh --cpu       # here: the same steps, tiny, to check the script itself
#
# It prints the GPU, then: interleaved training steps per precision and layout with the fraction of
# the measured bf16 matmul ceiling and of the GPU's bf16 peak (bench_train.py, demo widths and full
# width); a short fp16 + channels-last + compiled training run; sampling; FID of the samples. The
# Inception weights travel rounded to fp16 (the transfer limit is 64 MiB), so the FID figure is for
# the CUDA path and its speed, not for comparison with published values.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
mode=${1:-gpu}

if [[ $mode == --prepare ]]; then
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p .whl .gpu
    grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
    grep -qx '/.gpu/' .git/info/exclude || echo /.gpu/ >> .git/info/exclude
    for package in pydantic pydantic-core annotated-types typing-inspection torch-fidelity pytorch-msssim; do
        version=$($PY -m pip show "$package" | sed -n 's/^Version: //p')
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$package==$version"
    done
    $PY - <<'EOF'
from safetensors.torch import load_file, save_file
from ganforge.inception import resolve_weights
weights = resolve_weights()
if weights is None:
    raise SystemExit("no FID Inception weights here: run `ganforge inception-weights` first")
save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(weights).items()}, ".gpu/inception-fp16.safetensors")
EOF
    du -sh .whl .gpu
    exit 0
fi

out=$(mktemp -d)
peak=()
if [[ $mode == --cpu ]]; then
    device=cpu; bench=(--rounds 2 --steps 1 --modes fp32,auto); steps=2; full=0; fid=32
else
    device=cuda; bench=(--rounds 4 --steps 5); steps=40; full=1; fid=256
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee /dev/stderr)
    case $gpu in  # dense bf16 peak, TFLOP/s (vendor data sheets)
        *H100*|*H200*) peak=(--peak 989) ;;
        *A100*) peak=(--peak 312) ;;
        *L40S*) peak=(--peak 362) ;;
    esac
    if compgen -G ".whl/*.whl" > /dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site
    fi
    $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/ganforge . > /dev/null
    export PYTHONPATH=/tmp/ganforge:${PYTHONPATH:-}
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.version.cuda)"
fi
export PYTHONUNBUFFERED=1 GANFORGE_CACHE=$out/cache
if [[ -f .gpu/inception-fp16.safetensors ]]; then
    $PY -c "from safetensors.torch import load_file, save_file; save_file({k: v.float() if v.is_floating_point() else v for k, v in load_file('.gpu/inception-fp16.safetensors').items()}, '$out/inception.safetensors')"
    export GANFORGE_INCEPTION_WEIGHTS=$out/inception.safetensors
fi

echo "## training steps, demo widths"
timeout 150 $PY benchmarks/bench_train.py --device $device "${bench[@]}" "${peak[@]}" --eval-images 64
if [[ $full == 1 ]]; then
    echo "## training steps, full width (latent 512)"
    timeout 150 $PY benchmarks/bench_train.py --device $device --full --modes fp32,bf16+channels_last,auto --rounds 4 \
        --steps 3 --eval-images 64 "${peak[@]}"
fi
echo "## fp16, channels-last, compiled generator: a short run, sampling, FID"
timeout 120 $PY -m ganforge build examples/demo.toml --out $out/run --steps $steps --device $device --precision fp16 \
    --compile --no-eval --set train.channels_last=true --set data.size=256 --set train.log_every=10
start=$(date +%s.%N)
$PY -m ganforge sample --weights $out/run/generator_ema.safetensors -n $fid --out $out/samples --device $device
echo "sampling: $fid images in $($PY -c "print(round($(date +%s.%N) - $start, 2))") s"
if [[ -n ${GANFORGE_INCEPTION_WEIGHTS:-} ]]; then
    timeout 150 $PY -m ganforge evaluate --fake $out/samples --real examples/demo.toml -n $fid --metrics fid --device $device
else
    echo "FID: skipped (no .gpu/inception-fp16.safetensors: run --prepare here first)"
fi
