#!/usr/bin/env bash
# Configure (once) and build the C++ runtime against the torch wheel of $PYTHON (default: the
# repository's .venv), then build incrementally. Used by `make runtime`, `make test` and the
# Python tests. Output: runtime/build/{decoder_main, wenet_eff_runtime*.so, test_*}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
build="${WENET_EFF_RUNTIME_BUILD:-$here/build}"
venv_bin="$(dirname "$py")"
export PATH="$venv_bin:$PATH"  # the venv's cmake/ninja when pip installed them
mkdir -p "$build"
# one build at a time in a build directory (make test's parallel workers, recipe stages)
exec 9>"$build/.build.lock"
flock 9
if [ ! -f "$build/CMakeCache.txt" ]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  cmake -S "$here" -B "$build" "${generator[@]}" \
    -DCMAKE_PREFIX_PATH="$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
    -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython3_EXECUTABLE="$py" >/dev/null
fi
cmake --build "$build" -j "${JOBS:-2}"
