# Environment of the mini recipe (source it from recipes/mini/s0): the repository's package and
# tools/ on the Python path, and the repository's virtualenv first on PATH when there is one.
# MAIN_ROOT may be set by the caller when the recipe directory is a copy elsewhere.
MAIN_ROOT=${MAIN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
if [ ! -d "$MAIN_ROOT/wenet_eff" ]; then
  echo "path.sh: $MAIN_ROOT holds no wenet_eff/: set MAIN_ROOT to the repository" \
    "(MAIN_ROOT=/path/to/wenet_eff bash run.sh ...)" >&2
  return 1 2>/dev/null || exit 1
fi
if [ ! -f tools/parse_options.sh ]; then
  echo "path.sh: tools/ is missing here: ln -sfn \"$MAIN_ROOT/tools\" tools" >&2
  return 1 2>/dev/null || exit 1
fi
export MAIN_ROOT
export PYTHONPATH="$MAIN_ROOT:$MAIN_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$MAIN_ROOT/.venv/bin/python" ]; then
  export PATH="$MAIN_ROOT/.venv/bin:$PATH"
fi
export PYTHONIOENCODING=UTF-8
