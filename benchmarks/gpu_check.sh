#!/usr/bin/env bash
# The whole GPU check in one run, on a machine without network (docs/gpu.md, "Checking on a GPU machine").
#
#   bash benchmarks/gpu_wheels.sh                       # where there is network: the wheels into .whl/
#   bash benchmarks/gpu_check.sh [--no-install] [OUTDIR]   # on the GPU machine, with .whl/ beside the tree
#
# 1. installs .whl/*.whl into $GPU_CHECK_SITE (default /tmp/site) with pip --no-index --no-deps and puts
#    the repository, then that folder, on PYTHONPATH; checks that daskopt's dependencies import
#    (--no-install: skips the install and uses $PYTHON as it is);
# 2. prints nvidia-smi and torch.cuda information; without a CUDA GPU it says so in one line and exits 0;
# 3. runs, each under its own timeout, continuing after a failure: the GPU tests (pytest tests/gpu), the
#    torch_digits example's local-cuda study (study-gpu.toml, fewer trials) and benchmarks/gpu_packing.py.
# Logs go to OUTDIR (default $OUT, else ./gpu-check-out): install.log, gpu.log, tests.log, example.log,
# gpu_packing.log and results.txt (every RESULT line and the summary). Everything ends within
# $GPU_CHECK_BUDGET_S seconds (default 420) plus a few. Exit 0 when every step passed (or there is no GPU).
#
# Environment: PYTHON (default python3), GPU_CHECK_SITE, GPU_CHECK_BUDGET_S, EXAMPLE_TRIALS (default 16),
# GPU_PACKING_ARGS (default "--ks 1,2,4,8 --trials 24 --epochs 6").
set -uo pipefail

INSTALL=1
OUTDIR=${OUT:-}
for arg in "$@"; do
    case "$arg" in
        --no-install) INSTALL=0 ;;
        -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
        *) OUTDIR=$arg ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTDIR=${OUTDIR:-$ROOT/gpu-check-out}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }
cd "$ROOT" || exit 2

PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET=${GPU_CHECK_BUDGET_S:-420}
EXAMPLE_TRIALS=${EXAMPLE_TRIALS:-16}
GPU_PACKING_ARGS=${GPU_PACKING_ARGS:---ks 1,2,4,8 --trials 24 --epochs 6}
RESULTS=$OUTDIR/results.txt
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
rm -f "$OUTDIR"/{install,gpu,tests,example,gpu_packing}.log "$RESULTS"
say() { echo "gpu_check: $*"; }
result() { echo "RESULT $*" >>"$RESULTS"; }

# [EXPECT=REGEX] run_step NAME LOG CAP CMD...: CMD under `timeout`, at most CAP seconds and never past the
# budget; output appended to LOG; ok when it exits 0 (and LOG has a line matching EXPECT, when given);
# sets STEP_RC (124: timed out, 125: skipped for lack of time).
N_OK=0 N_BAD=0 SUMMARY=()
EXPECT=
run_step() {
    local name=$1 log=$2 cap=$3 left status started elapsed
    shift 3
    left=$((BUDGET - SECONDS - 12))
    if [ "$left" -lt 20 ]; then
        STEP_RC=125 status=skipped elapsed=0
        echo "skipped: ${left}s of the ${BUDGET}s budget left" >>"$log"
    else
        [ "$cap" -gt "$left" ] && cap=$left
        started=$SECONDS
        echo "\$ $* (timeout ${cap}s)" >>"$log"
        timeout --kill-after=10 "$cap" "$@" >>"$log" 2>&1 </dev/null
        STEP_RC=$? elapsed=$((SECONDS - started))
        case $STEP_RC in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
        if [ "$status" = ok ] && [ -n "$EXPECT" ] && ! grep -Eq "$EXPECT" "$log"; then
            status=failed
            echo "gpu_check: exit 0, but no line matches: $EXPECT" >>"$log"
        fi
    fi
    EXPECT=
    if [ "$status" = ok ]; then N_OK=$((N_OK + 1)); else N_BAD=$((N_BAD + 1)); fi
    SUMMARY+=("$(printf '%-12s %-8s rc=%-3s %4ss  %s' "$name" "$status" "$STEP_RC" "$elapsed" "${log#"$OUTDIR"/}")")
    result "gpu_check_step name=$name status=$status rc=$STEP_RC seconds=$elapsed"
    say "$name: $status (rc=$STEP_RC, ${elapsed}s) -> $log"
    if [ "$status" != ok ]; then tail -n 15 "$log" | sed 's/^/    | /'; fi
}

finish() {  # finish EXIT_CODE: the summary, on stdout and in results.txt
    say "summary after ${SECONDS}s ($N_OK ok, $N_BAD not ok); logs in $OUTDIR"
    printf '    %s\n' "${SUMMARY[@]}"
    grep -h '^RESULT ' "$OUTDIR"/*.log 2>/dev/null | sort -u >>"$RESULTS"
    grep '^RESULT ' "$RESULTS" | grep -v '^RESULT gpu_check_step' | sed 's/^/    /'
    exit "$1"
}

# ------------------------------------------------------------------ 1. wheels and imports
IMPORT_CHECK='
import importlib, importlib.metadata, sys
strict = sys.argv[1] == "strict"
required = ["dask", "distributed", "optuna", "bokeh", "pydantic", "daskopt"]
extra = ["dask_cuda", "pytest", "pytest_timeout"]
found, bad = [], []
for name in required + extra:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        line = f"{name}: {type(exc).__name__}: " + (str(exc).splitlines() or [""])[0]
        print(line)
        if strict or name in required:
            bad.append(line)
        continue
    try:
        version = getattr(module, "__version__", None) or importlib.metadata.version(name.replace("_", "-"))
    except Exception:
        version = "?"
    print(f"{name} {version} {module.__file__}")
    found.append(f"{name} {version}")
print("imports ok: " + ", ".join(found) if not bad else "imports FAILED: " + "; ".join(bad))
sys.exit(1 if bad else 0)
'
INSTALL_OK=1
if [ "$INSTALL" = 1 ]; then
    mapfile -t WHEELS < <(find "$ROOT/.whl" -maxdepth 1 -type f -name '*.whl' 2>/dev/null | sort)
    if [ "${#WHEELS[@]}" = 0 ]; then
        say "no wheels in $ROOT/.whl (run benchmarks/gpu_wheels.sh where there is network, carry .whl/)"
        echo "no wheels in $ROOT/.whl" >"$OUTDIR/install.log"
        INSTALL_OK=0
    else
        # cuda-bindings must match the driver: the image's own, when it has one, wins over the shipped 12.x.
        if "$PY" -c 'import cuda.bindings' >/dev/null 2>&1; then
            mapfile -t WHEELS < <(printf '%s\n' "${WHEELS[@]}" | grep -v '/cuda_bindings-')
            echo "the image has cuda.bindings: its own is kept, the shipped cuda_bindings wheel is not installed" \
                >>"$OUTDIR/install.log"
        fi
        rm -rf "$SITE"
        run_step install "$OUTDIR/install.log" 150 "$PY" -m pip install --no-index --no-deps \
            --disable-pip-version-check --target "$SITE" "${WHEELS[@]}"
        [ "$STEP_RC" = 0 ] || INSTALL_OK=0
    fi
    export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    STRICT=strict
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    STRICT=lenient
fi
timeout 120 "$PY" -c "$IMPORT_CHECK" "$STRICT" >>"$OUTDIR/install.log" 2>&1 </dev/null || INSTALL_OK=0
say "$("$PY" -V 2>&1) ($PY); PYTHONPATH=$PYTHONPATH"
say "$(grep -E '^imports (ok|FAILED)' "$OUTDIR/install.log" | tail -n 1 || echo 'import check did not finish')"
if [ "$INSTALL_OK" = 1 ]; then result "gpu_check_install status=ok"; else
    result "gpu_check_install status=failed"
    say "wheel install / import check FAILED: see $OUTDIR/install.log"
fi

# ------------------------------------------------------------------ 2. the GPU, as nvidia-smi and torch see it
GPU_INFO='
import os, sys
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
try:
    import torch
except Exception as exc:
    print(f"torch: not importable ({type(exc).__name__}: {exc})")
    sys.exit(3)
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}): torch.cuda.is_available()={torch.cuda.is_available()} device_count={n}")
for i in range(n):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
name = torch.cuda.get_device_name(0).replace(" ", "_") if n else "none"
print(f"RESULT gpu_check gpus={n} name={name} torch={torch.__version__} cuda={torch.version.cuda}")
sys.exit(0 if n else 3)
'
GPU_LOG=$OUTDIR/gpu.log
if command -v nvidia-smi >/dev/null 2>&1; then
    { timeout 30 nvidia-smi; timeout 30 nvidia-smi -L; } >>"$GPU_LOG" 2>&1 </dev/null
    SMI="nvidia-smi: $(grep -c '^GPU ' "$GPU_LOG") GPU(s)"
else
    echo "nvidia-smi: not found" >>"$GPU_LOG"
    SMI="nvidia-smi: not found"
fi
timeout --kill-after=10 90 "$PY" -c "$GPU_INFO" >>"$GPU_LOG" 2>&1 </dev/null
TORCH_RC=$?
sed 's/^/    /' "$GPU_LOG" | grep -v '^    $' | tail -n 30
TORCH_LINE=$(grep -E '^torch' "$GPU_LOG" | tail -n 1)
if [ "$TORCH_RC" != 0 ]; then
    say "$SMI; ${TORCH_LINE:-torch: check failed (rc=$TORCH_RC)}"
    if [ "$TORCH_RC" = 3 ]; then
        grep -h '^RESULT ' "$GPU_LOG" >>"$RESULTS" || result "gpu_check gpus=0 torch=none"
        say "no CUDA GPU found (nvidia-smi/torch.cuda): nothing to measure"
        [ "$INSTALL_OK" = 1 ] && exit 0
        exit 1
    fi
    SUMMARY+=("torch.cuda   failed   rc=$TORCH_RC (gpu.log)")
    N_BAD=$((N_BAD + 1))
    finish 1
fi

# ------------------------------------------------------------------ 3. the measurements
# (a) the GPU tests
EXPECT=' passed' run_step tests "$OUTDIR/tests.log" 170 "$PY" -m pytest tests/gpu -q -p no:cacheprovider --timeout 120 -rs
result "gpu_tests rc=$STEP_RC summary=\"$(grep -E '^(=+ )?([0-9]+ (passed|failed|skipped|errors?)|no tests ran)' "$OUTDIR/tests.log" |
    tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')\""

# (b) the example's local-cuda study, on a copy (its journal and run files stay out of the tree)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
cp -r examples/torch_digits "$WORK/" && rm -rf "$WORK/torch_digits/runs" "$WORK"/torch_digits/*.journal
cd "$WORK" || exit 2
EXPECT="^study '" run_step example "$OUTDIR/example.log" 100 "$PY" -m daskopt.cli run torch_digits/study-gpu.toml --n-trials "$EXAMPLE_TRIALS"
cd "$ROOT" || exit 2
"$PY" - "$OUTDIR/example.log" "$WORK" "$STEP_RC" >>"$RESULTS" 2>/dev/null <<'PY'
import json, pathlib, re, sys
log, work, rc = pathlib.Path(sys.argv[1]).read_text(errors="replace"), pathlib.Path(sys.argv[2]), sys.argv[3]
counts = re.findall(r"^study '[^']*': (.*)$", log, re.M)
fields = {state: n for n, state in re.findall(r"(\d+) (\w+)", counts[-1])} if counts else {}
best = [json.loads(p.read_text()).get("value") for p in work.glob("torch_digits/runs/*/best.json")]
fields["best"] = round(best[0], 4) if best and best[0] is not None else "none"
print(" ".join(["RESULT torch_digits_gpu", f"rc={rc}", *(f"{k}={v}" for k, v in fields.items())]))
PY
rm -rf "$WORK"

# (c) trials per hour and GPU utilization at k trials per GPU (prints its own RESULT line)
# shellcheck disable=SC2086  # GPU_PACKING_ARGS is a list of options
EXPECT='^RESULT gpu_packing ' run_step gpu_packing "$OUTDIR/gpu_packing.log" 200 "$PY" -m benchmarks.gpu_packing $GPU_PACKING_ARGS

if [ "$N_BAD" = 0 ] && [ "$INSTALL_OK" = 1 ]; then finish 0; else finish 1; fi
