#!/usr/bin/env bash
# Downloads, on a machine with network, the wheels that benchmarks/gpu_check.sh installs on a GPU machine
# without one: CPython 3.12, manylinux x86_64, one version of each package, into .whl/ (git-ignored).
#
#   bash benchmarks/gpu_wheels.sh          # then carry .whl/ to the GPU machine with the working tree
#
# The GPU image is assumed to have torch (with numpy, jinja2, fsspec, ...), scikit-learn (numpy, scipy,
# joblib), nvidia-ml-py, click, cloudpickle, msgpack and rich (pygments, markdown-it-py); everything else
# daskopt's core dependencies, the `cuda` extra (dask-cuda 26.10 pins dask/distributed 2026.7.1 and
# bokeh<3.10) and the GPU tests (pytest, pytest-timeout) need is here. Left out on purpose:
# - pandas (dask-cuda lists it, but neither dask_cuda's import nor LocalCUDACluster nor daskopt uses it;
#   installed beside an older numpy it could break bokeh's optional pandas import);
# - greenlet (SQLAlchemy 2.1 needs it only for asyncio; optuna's storages are synchronous).
# cuda-bindings 12.x (needed by cuda-core, which dask_cuda imports) is shipped, but gpu_check.sh installs it
# only when the image has no cuda.bindings of its own (that one matches the image's driver and torch).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DEST=.whl
# name==version, one per package; versions are the ones .venv is tested with, except dask/distributed/bokeh
# (dask-cuda's pins). Keep this list and the closure it states in step with pyproject.toml.
WHEELS=(
    # the cuda extra: dask-cuda and its CUDA Python bindings
    dask-cuda==26.10.0 rapids-dask-dependency==26.10.0 cuda-core==1.2.2 cuda-bindings==12.9.10
    cuda-pathfinder==1.9.1
    # dask[distributed]
    dask==2026.7.1 distributed==2026.7.1 fsspec==2026.9.0 packaging==26.4 partd==1.4.2 locket==1.0.0
    toolz==1.2.0 PyYAML==6.0.4 Jinja2==3.1.6 MarkupSafe==3.0.4 psutil==7.2.2 sortedcontainers==2.4.0
    tblib==3.2.2 tornado==6.6.1 zict==3.0.0
    # optuna
    optuna==5.0.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9 colorlog==6.12.0 tqdm==4.70.1
    typing_extensions==4.16.0
    # bokeh<3.10
    bokeh==3.9.2 contourpy==1.3.3 narwhals==2.29.0 pillow==13.0.0 xyzservices==2026.9.1
    # pydantic
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    # tests/gpu
    pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pytest-timeout==2.4.0 Pygments==2.21.0
)

rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$DEST" "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# daskopt itself, from this working tree (gpu_check.sh still imports the tree's sources first).
VENV_PY=.venv/bin/python
[ -x "$VENV_PY" ] || VENV_PY=$PY
"$VENV_PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DEST" . 2>/dev/null \
    || "$VENV_PY" -m pip wheel --quiet --no-deps -w "$DEST" .

count=$(find "$DEST" -type f -name '*.whl' | wc -l)
expected=$((${#WHEELS[@]} + 1))
dupes=$(find "$DEST" -type f -name '*.whl' -printf '%f\n' | cut -d- -f1 | tr 'A-Z.' 'a-z_' | sort | uniq -d)
if [ "$count" != "$expected" ] || [ -n "$dupes" ]; then
    echo "gpu_wheels: expected $expected wheels, one per package; got $count (duplicates: ${dupes:-none})" >&2
    exit 1
fi
echo "gpu_wheels: $count wheels, $(du -sh "$DEST" | cut -f1) in $DEST/"
