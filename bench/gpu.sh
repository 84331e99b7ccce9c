#!/usr/bin/env bash
# bench/gpu.sh: the `gpu` profile on a GPU machine, in the repository root, in one prepared script.
#
#   bash bench/gpu.sh                 # CUDA check, training stages CPU vs GPU, then the gpu profile
#   GPU_BENCH=stages bash bench/gpu.sh   # only the stage bench (needs torch and a few small packages)
#   GPU_BENCH=vmc bash bench/gpu.sh      # only the gpu profile of carracing-vmc
#   GPU_BENCH=pick bash bench/gpu.sh     # only the gpu profile of pick-vla (a separate run: ~6 min)
#   GPU_BENCH_DRY_RUN=1 bash bench/gpu.sh   # every step on the CPU at smoke size: checks the script itself
#
# 1. Stops at once, saying why, when torch sees no CUDA device (a CPU-only torch, no driver).
# 2. bench/bench_gpu.py: V, encoding, M and the CMA-ES dreams on the CPU and the GPU side by side
#    (the tasks' own functions on synthetic data) and what the gpu profile's training stages cost
#    at those rates -> $OUT/gpu-stages.json.
# 3. The gpu profile through bench/quality.py (one training seed, 100 evaluation episodes, then
#    the baselines on the same seeds): the same table as the CPU runs; its "wall min" is the
#    training run (goal <= 8), the total time includes the baselines -> $OUT/quality-*.json, logs.
#
# Python: $PYTHON, else .venv/bin/python when present, else python3. The train flow needs the
# whole lock (MLflow, Prefect, gymnasium[box2d], Great Expectations, ...) with a CUDA build of
# torch: a .venv built from requirements.lock where an index is reachable (pip's default torch
# 2.13.0 wheel for Linux is a CUDA build; the lock's CPU build is not), or the image built with
# `docker build -f infra/Dockerfile --build-arg TORCH_VARIANT=cu130`. Nothing here downloads
# anything. Wheels in .whl/ (if any) are installed offline into a scratch folder first.
# Everything it writes goes under $OUT (default: bench/results/gpu-<time>); stores under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/bench/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
GPU_BENCH=${GPU_BENCH:-stages,vmc}
DRY=${GPU_BENCH_DRY_RUN:+1}
if [ -n "$DRY" ]; then  # the same steps, CPU-sized: no CUDA needed, nothing measured
  PROFILE=smoke EPISODES=2 STAGE_ARGS=(--devices cpu --episodes 3 --cpu-episodes 2)
else
  PROFILE=gpu EPISODES=100 STAGE_ARGS=()
fi
export PYTHONUNBUFFERED=1 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
export DREAMOPS_WORKERS=${DREAMOPS_WORKERS:-16}   # collection and evaluation processes: the 16 cores
SCRATCH=$(mktemp -d /tmp/dreamops-gpu.XXXXXX)

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3); fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SCRATCH/site" .whl/*.whl
  export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# 1. CUDA, or stop here
"$PY" - "$DRY" <<'EOF' || exit 1
import sys
try:
    import torch
except ImportError:
    print(f"bench/gpu.sh: {sys.executable} has no torch: give PYTHON= an interpreter with a CUDA build of "
          "torch. Nothing was run.", file=sys.stderr)
    sys.exit(1)
if sys.argv[1:] == ["1"]:
    print("dry run: the CUDA check is skipped and every step runs on the CPU at smoke size")
elif not torch.cuda.is_available():
    build = torch.version.cuda
    print(f"bench/gpu.sh: torch sees no CUDA device (torch {torch.__version__}, "
          + (f"built for CUDA {build}: check the driver, nvidia-smi and CUDA_VISIBLE_DEVICES)" if build
             else "a CPU-only build: give PYTHON= an interpreter with a CUDA build of torch)")
          + ". Nothing was run.", file=sys.stderr)
    sys.exit(1)
else:
    print(f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{torch.get_num_threads()} CPU threads")
EOF

# dreamops from this tree when the interpreter has no install of it: the package's folders, linked
# as setuptools' package-dir maps them (pyproject.toml)
if ! "$PY" -c "import dreamops.tasks" 2>/dev/null; then
  mkdir -p "$SCRATCH/src/dreamops"
  ln -s "$ROOT"/dreamops/*.py "$SCRATCH/src/dreamops/"
  for part in flows tasks models sim validation registry api; do ln -s "$ROOT/$part" "$SCRATCH/src/dreamops/$part"; done
  export PYTHONPATH="$SCRATCH/src${PYTHONPATH:+:$PYTHONPATH}"
fi

status=0
START=$(date +%s)
# 2. the training stages, CPU vs GPU
if [[ ,$GPU_BENCH, == *,stages,* ]]; then
  if "$PY" bench/bench_gpu.py "${STAGE_ARGS[@]}" --json "$OUT/gpu-stages.json" 2>&1 | tee "$OUT/gpu-stages.log"; then :; else
    echo "bench/gpu.sh: the stage bench failed (its log: $OUT/gpu-stages.log)" >&2; status=1
  fi
fi

flow_ready() {
  "$PY" - "$@" <<'EOF'
import importlib, sys
missing = []
for name in ("mlflow", "prefect", "gymnasium", "Box2D", "cma", "great_expectations", "evidently", *sys.argv[1:]):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure means the flow cannot run
        missing.append(f"{name} ({type(exc).__name__})")
if missing:
    print("bench/gpu.sh: the train flow cannot run with this interpreter: missing " + ", ".join(missing)
          + ". Build .venv from requirements.lock with a CUDA torch, or use the dreamops:cuda image.", file=sys.stderr)
    sys.exit(1)
EOF
}

# 3. the gpu profile, carracing-vmc: the CPU runs' table (bench/quality.py)
if [[ ,$GPU_BENCH, == *,vmc,* ]]; then
  if flow_ready; then
    t0=$(date +%s)
    if "$PY" bench/quality.py --profile $PROFILE --train-seeds 0 --episodes $EPISODES --home "$SCRATCH/home" 2>&1 \
        | tee "$OUT/gpu-vmc.log"; then
      cp "bench/results/quality-carracing-vmc-$PROFILE.json" "$OUT/"
    else
      status=1
    fi
    cp "$SCRATCH/home/$PROFILE/seed-0.log" "$OUT/gpu-vmc-seed-0.log" 2>/dev/null || true
    echo "carracing-vmc $PROFILE profile: $(( $(date +%s) - t0 )) s with the baselines (the table's wall min:" \
         "the run alone, goal <= 8)"
  else
    status=2
  fi
fi

# the gpu profile, pick-vla (its own run: the flow's own summary is the table)
if [[ ,$GPU_BENCH, == *,pick,* ]]; then
  if flow_ready pybullet; then
    t0=$(date +%s)
    DREAMOPS_HOME="$SCRATCH/pick" "$PY" -m dreamops.flows.cli train --agent pick-vla --profile $PROFILE \
      --no-progress 2>&1 | tee "$OUT/gpu-pick.log" || status=1
    echo "pick-vla $PROFILE profile: $(( $(date +%s) - t0 )) s (goal <= 480)" | tee -a "$OUT/gpu-pick.log"
  else
    status=2
  fi
fi

echo "bench/gpu.sh: $(( $(date +%s) - START )) s in all; outputs in $OUT (stores in $SCRATCH)"
exit $status
