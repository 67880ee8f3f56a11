#!/usr/bin/env bash
# The GPU run of issue 10, as one script: installs nothing over the network, ends in under
# 8 minutes on an H100, writes JSON figures to $OUT (or ./gpu-results).
#
#   Wheels the GPU machine lacks travel in .whl/ (see the device tool's README); then:
#   bash bench/gpu.sh
#
# Runs test_speed.py --model sdxl-random (full-size SDXL + plus-face IP-Adapter, random
# weights) at 1024x1024, identity lock on: the new defaults (contiguous UNet, first panel
# alone, cross-attention constants folded; every UNet step is also timed unfolded), the fold
# off for the whole board, the fp16-fix-style VAE decode with a CFG cutoff, the lightning mode,
# the studio's own cost over the generator (bench/overhead.py), and the compiled UNet
# (reduce-overhead, CUDA graphs; the measured size warmed up) with a cold and a warm cache.
# channels_last is not run again: shared/notes/gpu-h100.md measured it (136-149 vs 76 ms a step).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 STORYBOARD_DATA_DIR="$OUT/data"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
run() {  # name, timeout in seconds, test_speed arguments...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" python3 test_speed.py --model sdxl-random --size 1024x1024 --repeat 3 --json "$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "   exit $? ($(tail -n 1 "$OUT/$name.log"))"
}
run fast-defaults 60 --preset fast
STORYBOARD_FOLD_CROSS_ATTENTION=false run fast-fold-off 40 --preset fast
run fast-fp16-vae-cfg-cutoff 50 --preset fast --vae-force-upcast off --cfg-cutoff 0.5
run lightning 45 --preset lightning
echo "== overhead"
timeout 60 python3 bench/overhead.py --model sdxl-random --repeat 2 --json "$OUT/overhead.json" > "$OUT/overhead.log" 2>&1
echo "   exit $? ($(tail -n 1 "$OUT/overhead.log"))"
run fast-compiled-cold 180 --preset fast --compile
run fast-compiled-warm 45 --preset fast --compile   # the caches of the cold run, as after a restart
ls -l "$OUT"
