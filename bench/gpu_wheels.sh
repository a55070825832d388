#!/usr/bin/env bash
# Fetch, here, the Python 3.12 wheels that bench/gpu.sh needs on the lent GPU machine.
#
# That machine's python3 (3.12) has torch, pytorch-lightning, torchvision, numba,
# scikit-learn, threadpoolctl and pillow, but not pydantic, which plp_pipelines imports (the
# rest of what plp needs there is imported lazily by code these benches do not run). The
# versions are uv.lock's, so the GPU runs use what the tests here use. The wheels go to
# .whl/ (ignored by git); the device call carries it: see bench/README.md "GPU figures".
#
#     bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
names="pydantic pydantic-core annotated-types typing-inspection typing-extensions"
pins=$(python3 - $names <<'PY'
import sys, tomllib
with open("uv.lock", "rb") as lock:
    versions = {p["name"]: p["version"] for p in tomllib.load(lock)["package"]}
missing = [name for name in sys.argv[1:] if name not in versions]
if missing:
    sys.exit(f"uv.lock has no {', '.join(missing)}")
print(" ".join(f"{name}=={versions[name]}" for name in sys.argv[1:]))
PY
)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl $pins
ls .whl
