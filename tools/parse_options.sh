# shellcheck shell=bash
# Kaldi-style command-line options for recipe scripts. Source it after setting the defaults:
#
#   stage=0
#   nj=4
#   use_gpu=false
#   help_message="Usage: run.sh [--stage N] [--nj N] [--use-gpu true|false]"
#   . tools/parse_options.sh
#
# `run.sh --stage 2 --nj=8 --use-gpu true a b` then sets stage=2, nj=8, use_gpu=true and
# leaves `a b` in "$@". Rules:
#   --foo-bar VALUE and --foo_bar=VALUE both set the shell variable foo_bar;
#   the variable must already be set (a misspelt option is an error, not a new variable);
#   a variable whose current value is true or false accepts only true or false;
#   --config FILE sources FILE (more defaults) where it appears;
#   --help or -h prints $help_message and exits 0; parsing stops at `--` or the first argument
#   that is not an option.
# Works under `set -euo pipefail`; it is sourced, so errors exit the calling script.

while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h)
      printf '%s\n' "${help_message:-No help message is set for $0.}"
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --config)
      if [ $# -lt 2 ] || [ ! -f "$2" ]; then
        echo "$0: --config needs an existing file, got '${2:-}'" >&2
        exit 1
      fi
      # shellcheck disable=SC1090
      . "$2"
      shift 2
      continue
      ;;
    --*=*)
      _po_name=${1%%=*}
      _po_value=${1#*=}
      shift
      ;;
    --*)
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value" >&2
        exit 1
      fi
      _po_name=$1
      _po_value=$2
      shift 2
      ;;
    *)
      break
      ;;
  esac
  _po_name=${_po_name#--}
  _po_name=${_po_name//-/_}
  if ! [[ $_po_name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_name+set}" ]; then
    echo "$0: invalid option --${_po_name} (no such variable; see --help)" >&2
    exit 1
  fi
  case "${!_po_name}" in
    true | false)
      if [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
        echo "$0: option --${_po_name} takes true or false, got '$_po_value'" >&2
        exit 1
      fi
      ;;
  esac
  printf -v "$_po_name" '%s' "$_po_value"
done
unset _po_name _po_value
