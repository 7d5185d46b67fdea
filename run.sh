#!/usr/bin/env bash
# sfda_nb's one entry point. Every sub-command sets the project up first (idempotent), so each
# README command works on a fresh clone with nothing installed by hand.
#   ./run.sh demo     set up, render the embedded benchmark, train the source model, run STvM, print mIoU
#   ./run.sh test     set up and run the whole test suite (notebooks + tests/)
#   ./run.sh render   render the embedded benchmark into data/ (cached)
#   ./run.sh sweep    the embedded sweep of all three benchmark settings (07_experiments)
#   ./run.sh docs     build the offline HTML docs into _docs/html
#   ./run.sh setup    only the set-up
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python

setup() {
  if [ ! -x "$PY" ]; then python3 -m venv .venv; fi
  local stamp=.venv/.sfda_setup
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    # torch==2.13.0 is the CPU build on this machine's disk; an unpinned torch would pull a multi-GB CUDA build
    $PY -m pip install -q --upgrade pip
    $PY -m pip install -q "torch==2.13.0"
    $PY -m pip install -q -e ".[dev]"
    touch "$stamp"
  fi
}

cmd=${1:-demo}; shift || true
case "$cmd" in
  -h|--help|help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; echo "  (./run.sh demo --help: the demo's options; python -m sfda_nb.cli --help: every sub-command)" ;;
  setup) setup ;;
  demo) setup; $PY -m sfda_nb.cli demo "$@" ;;
  render) setup; $PY -m sfda_nb.cli render "$@" ;;
  sweep) setup; $PY -m sfda_nb.cli sweep "$@" ;;
  docs) setup; bash tools/build_docs.sh ;;
  test) setup; $PY -m pytest -q tests "$@" ;;
  *) echo "unknown command '$cmd'; use one of: demo test render sweep docs setup" >&2; exit 2 ;;
esac
