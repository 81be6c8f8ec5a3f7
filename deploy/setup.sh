#!/usr/bin/env bash
# Set up virtual-pet on a fresh machine, then run the demo (default) or the test suite.
#   bash deploy/setup.sh demo   -> Python venv in .venv, CPU torch, the package; runs `vpet demo`
#   bash deploy/setup.sh test   -> the same plus DCMTK, dicom3tools, Orthanc, PostgreSQL; runs pytest
# GPU sites: install your CUDA build of torch into .venv first (or set VPET_TORCH_SPEC), the
# package's torch range is open.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-demo}"
shift || true

if [ "$what" = test ]; then
  need=()
  for tool in /usr/bin/storescu /usr/bin/dciodvfy /usr/sbin/Orthanc; do
    [ -x "$tool" ] || need=(dcmtk dicom3tools orthanc postgresql)
  done
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need=(dcmtk dicom3tools orthanc postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
if ! $py -c "import torch" 2>/dev/null; then
  $py -m pip install -q "${VPET_TORCH_SPEC:-torch==2.13.0}"
fi
$py -m pip install -q -e ".[test]"

case "$what" in
  demo) exec .venv/bin/vpet demo "$@" ;;
  test) exec $py -m pytest -q "$@" ;;
  *) echo "usage: bash deploy/setup.sh [demo|test] [args...]" >&2; exit 2 ;;
esac
