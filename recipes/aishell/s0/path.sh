# Environment of the AISHELL-1 recipe (source it from recipes/aishell/s0): the repository's package and
# tools/ on the Python path, and the repository's virtualenv first on PATH when there is one.
# MAIN_ROOT may be set by the caller when the recipe directory is a copy elsewhere.
MAIN_ROOT=${MAIN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
export MAIN_ROOT
export PYTHONPATH="$MAIN_ROOT:$MAIN_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$MAIN_ROOT/.venv/bin/python" ]; then
  export PATH="$MAIN_ROOT/.venv/bin:$PATH"
fi
export PYTHONIOENCODING=UTF-8
