# shellcheck shell=bash
# Environment of every recipe: each recipes/<corpus>/s0/path.sh is a link to this file, sourced
# from the recipe directory (`. ./path.sh`). Puts the repository's package and tools/ on the
# Python path and its virtualenv first on PATH when there is one.
#
# MAIN_ROOT (the repository) is the parent of the directory that the recipe's tools/ link points
# to, so a copy of a recipe elsewhere (run.sh, path.sh, local/, conf/ and a tools link) finds it
# too; the caller may set MAIN_ROOT instead.
if [ ! -f tools/parse_options.sh ]; then
  echo "path.sh: $PWD/tools/ is missing: source path.sh from the recipe directory, which" \
    "links the repository's tools (ln -sfn /path/to/wenet_eff/tools tools)" >&2
  return 1
fi
MAIN_ROOT=${MAIN_ROOT:-$(cd -P tools/.. && pwd)}
if [ ! -d "$MAIN_ROOT/wenet_eff" ]; then
  echo "path.sh: MAIN_ROOT=$MAIN_ROOT holds no wenet_eff/: set MAIN_ROOT to the repository" \
    "(MAIN_ROOT=/path/to/wenet_eff bash run.sh ...)" >&2
  return 1
fi
export MAIN_ROOT
export PYTHONPATH="$MAIN_ROOT:$MAIN_ROOT/tools${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$MAIN_ROOT/.venv/bin/python" ]; then
  export PATH="$MAIN_ROOT/.venv/bin:$PATH"
fi
export PYTHONIOENCODING=UTF-8
