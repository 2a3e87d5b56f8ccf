#!/usr/bin/env bash
# Creates .venv and installs vaelab into it. torch comes first, pinned to the CPU
# build through constraints.txt, so that no dependency pulls the CUDA wheels.
# Usage: bash scripts/install.sh [EXTRAS]   e.g. test (pytest, hypothesis, diffusers, tensorboard),
#        diffusers, tensorboard, or several joined by commas: diffusers,tensorboard
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
extra=""
[ -n "${1:-}" ] && extra="[$1]"
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extra}"
