#!/usr/bin/env bash
# The GPU benchmark in one call, made to work the first time a GPU is lent (rarely, for minutes).
#
#   bash bench/gpu.sh --fetch-wheels       # here, with a network: the wheels of bench/gpu-wheels.txt into .whl/
#   bash bench/gpu.sh                      # on the GPU machine (.whl/ carried): the eager stages
#   bash bench/gpu.sh compiled             # the compiled UNet, cold then warm cache: a lease of its own
#   bash bench/gpu.sh STAGE...             # chosen stages, in the order given
#   bash bench/gpu.sh --dry-run [STAGE...] # the same plumbing on the tiny models on this CPU
#
# 1. Preflight (seconds): every import, CUDA, the CLIP vocabulary (bench/gpu_preflight.py); a
#    failure ends the run before any model is built. Carried wheels go to $GPU_WORK/site; a torch
#    (or nvidia-*) wheel is refused: the machine's own CUDA torch is the one to measure.
# 2. Stages: test_speed.py --model sdxl-random --size 1024x1024 (full-size SDXL + plus-face
#    IP-Adapter, random weights, identity lock on), each under its own time limit, run only while
#    the budget ($GPU_BUDGET_S, default 540 s: one 600 s call less transfers) still holds its
#    estimate; a stage that does not fit is reported as skipped with the command that runs it.
# 3. Results: at most 3 files straight under $OUT (the device tool returns 8 files, 2 folders
#    deep), rewritten after every stage so a run killed at its limit still returns what it did:
#    summary.txt (one line per stage), results.json (every stage's JSON), logs.tar.gz (the logs).
#    The data dir, the tiny models, the compile cache and the carried site live in $GPU_WORK
#    (default /tmp/storyboard-gpu), never under $OUT; a dry run builds its tiny models there too,
#    or reads them from $GPU_TINY_CACHE.
#
# Stage estimates (seconds on an H100/H200 at 1024x1024), from measured work:
#  - every sdxl-random stage first pays ~40 s before its first step: imports and CUDA start
#    (~15 s), the FLOP count on the meta device (53 s on this 2-core VM, ~20 s on the GPU
#    host's 16 cores), the random full-size build (2-3 s on the H100 of BENCHMARKS.md's GPU table);
#  - UNet passes, counted on the tiny model with the same flags (--repeat 3): FAST 240 calls of
#    batch 2 plus, on a GPU only, a 6-panel board (a warm-up and 3 timed, 576 more items) and
#    the breakdown: ~1,100 batch items at 21-38 ms an item (76 ms for batch 2, 256 ms for 12,
#    eager, contiguous, the note) = 25-45 s, and ~45 VAE decodes at 95-135 ms = 6 s;
#    lightning: 408 calls of batch 2 and 200 of batch 1 (~1,000 items: its FAST beside, both
#    LoRA switches) = 20-40 s, ~85 decodes = 11 s, LoRA load/fuse/unfuse on the 2.6 B UNet ~10 s;
#  - the cold compile: 2 graphs x 144 s (the note, 16 CPU cores) before the FAST stage's work.
# Each limit is about twice its estimate: the first run on a new machine is the one that counts.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
DRY=0
FETCH=0
STAGES=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --fetch-wheels) FETCH=1 ;;
    -h|--help) usage ;;
    -*) echo "gpu.sh: unknown option $arg" >&2; usage 2 ;;
    *) STAGES+=("$arg") ;;
  esac
done

PYTHON="${PYTHON:-python3}"
if [ "$FETCH" = 1 ]; then
  # The platforms of the device tool's README: manylinux x86-64 wheels for the machine's Python 3.12.
  exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl -r bench/gpu-wheels.txt
fi

OUT="${OUT:-gpu-results}"
WORK="${GPU_WORK:-${TMPDIR:-/tmp}/storyboard-gpu}"
BUDGET="${GPU_BUDGET_S:-540}"
mkdir -p "$OUT" "$WORK/logs" "$WORK/json"
OUT="$(cd "$OUT" && pwd)"
WORK="$(cd "$WORK" && pwd)"
case "$WORK/" in "$OUT"/*) echo "gpu.sh: GPU_WORK ($WORK) must be outside \$OUT ($OUT): only results come back" >&2; exit 2 ;; esac
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 STORYBOARD_DATA_DIR="$WORK/data" TMPDIR="$WORK"
START=$SECONDS

WHEELS="${GPU_WHEELS:-.whl}"  # the carried wheels (the device tool's convention)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  if compgen -G "$WHEELS/torch-*.whl" >/dev/null || compgen -G "$WHEELS/nvidia_*.whl" >/dev/null; then
    echo "gpu.sh: $WHEELS holds a torch or nvidia wheel: never carry torch, the GPU machine has its own CUDA build" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$WHEELS"/*.whl \
    || { echo "gpu.sh: installing the carried wheels failed (see above)" >&2; exit 2; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

summary() { echo "$*" | tee -a "$WORK/summary.txt"; }
pack() {  # everything that comes back, rewritten whole: 3 files straight under $OUT
  cp "$WORK/summary.txt" "$OUT/summary.txt"
  "$PYTHON" - "$WORK" "$OUT" <<'PY'
import json, pathlib, sys, tarfile
work, out = map(pathlib.Path, sys.argv[1:])
results = {}
for path in sorted((work / "json").glob("*.json")):
    try:
        results[path.stem] = json.loads(path.read_text())
    except ValueError as error:  # a stage killed while writing
        results[path.stem] = {"unreadable": str(error)}
(out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
    for path in sorted((work / "logs").iterdir()):
        tar.add(path, arcname=f"logs/{path.name}")
PY
}

: > "$WORK/summary.txt"
if [ "$DRY" = 1 ]; then
  TINY="${GPU_TINY_CACHE:-$WORK/tiny-models}"
  MODEL=(--model tiny --cache-dir "$TINY" --device cpu)
  REPEAT=(--repeat 1 --steps 2)  # plumbing only: the tiny model's times say nothing about a GPU
  summary "gpu.sh --dry-run: the tiny models on the CPU; budget ${BUDGET} s"
else
  MODEL=(--model sdxl-random --size 1024x1024)
  REPEAT=(--repeat 3)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$WORK/logs/nvidia-smi.csv" 2>&1
  summary "gpu.sh: $(tail -n 1 "$WORK/logs/nvidia-smi.csv"); budget ${BUDGET} s"
fi

"$PYTHON" -m bench.gpu_preflight $([ "$DRY" = 1 ] && echo --dry-run) > "$WORK/logs/preflight.log" 2>&1
status=$?
cat "$WORK/logs/preflight.log"
if [ "$status" != 0 ]; then
  summary "preflight FAILED in $((SECONDS - START)) s: $(grep -m1 FAILED "$WORK/logs/preflight.log")"
  pack
  exit 2
fi
summary "preflight ok in $((SECONDS - START)) s"

# name | estimate s | limit s | command (test_speed.py arguments, or another script)
stage_spec() {
  case "$1" in
    fast-defaults)            echo "90 180 speed --preset fast" ;;
    lightning)                echo "100 200 speed --preset lightning" ;;
    fast-fp16-vae-cfg-cutoff) echo "85 170 speed --preset fast --vae-force-upcast off --cfg-cutoff 0.5" ;;
    overhead)                 echo "50 100 overhead" ;;  # no FLOP count; 2 rounds of 2 six-panel boards
    fast-fold-off)            echo "100 200 speed --preset fast --fold-off" ;;  # ~30% slower steps unfolded
    fast-compiled-cold)       echo "380 500 speed --preset fast --compile" ;;  # 2 graphs x 144 s, then the work
    fast-compiled-warm)       echo "120 200 speed --preset fast --compile" ;;  # the cold run's cache: a restart
    # The draft mode (one UNet pass with TAESDXL) and live previews: a stage each here as soon as
    # test_speed.py accepts them (--preset draft is picked up below when config.PRESETS has it).
    draft)                    echo "100 200 speed --preset draft" ;;
    *) return 1 ;;
  esac
}
has_draft() { "$PYTHON" -c 'import sys; from config import PRESETS; sys.exit("draft" not in PRESETS)' 2>/dev/null; }
if [ ${#STAGES[@]} = 0 ]; then
  STAGES=(fast-defaults)
  has_draft && STAGES+=(draft)
  STAGES+=(lightning fast-fp16-vae-cfg-cutoff overhead fast-fold-off)
elif [ "${STAGES[*]}" = compiled ]; then
  STAGES=(fast-compiled-cold fast-compiled-warm)
fi

failed=0
for name in "${STAGES[@]}"; do
  if ! spec=$(stage_spec "$name"); then
    summary "$name: unknown stage"; failed=1; continue
  fi
  read -r estimate limit kind args <<< "$spec"
  left=$((BUDGET - (SECONDS - START))); [ "$left" -lt 0 ] && left=0
  if [ "$left" -lt "$estimate" ]; then
    summary "$name: skipped, ${left} s of the budget left and it needs ~${estimate} s (bash bench/gpu.sh $name)"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  [ "$DRY" = 1 ] && limit=$left  # the tiny model's CPU time is not what the GPU limits size
  began=$SECONDS
  log="$WORK/logs/$name.log" json="$WORK/json/$name.json"
  echo "== $name (limit ${limit} s)"
  if [ "$kind" = overhead ]; then
    overhead_model=("${MODEL[@]:0:2}")
    [ "$DRY" = 1 ] && overhead_model+=(--cache-dir "$TINY")
    timeout "$limit" "$PYTHON" -m bench.overhead "${overhead_model[@]}" --repeat "$([ "$DRY" = 1 ] && echo 1 || echo 2)" \
      --json "$json" > "$log" 2>&1
  else
    fold=true
    if [[ " $args " == *" --fold-off "* ]]; then fold=false; args=${args/--fold-off/}; fi
    # shellcheck disable=SC2086  # $args is a list of flags
    STORYBOARD_FOLD_CROSS_ATTENTION=$fold timeout "$limit" "$PYTHON" test_speed.py "${MODEL[@]}" "${REPEAT[@]}" \
      --json "$json" $args > "$log" 2>&1
  fi
  code=$?
  [ "$code" = 124 ] && verdict="KILLED at its ${limit} s limit" || verdict="exit $code"
  [ "$code" = 0 ] || failed=1
  summary "$name: $verdict in $((SECONDS - began)) s (estimate ${estimate} s): $(tail -n 1 "$log")"
  pack
done
summary "done in $((SECONDS - START)) s"
pack
exit "$failed"
