#!/usr/bin/env bash
# Create .venv and install hptransfer with everything its tests and scripts use.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
"$PY" -m pip install -q --upgrade pip
# torch pinned first: 2.13.0 is a CPU build; an unpinned torch may pull a multi-GB CUDA build.
"$PY" -m pip install -q torch==2.13.0
# The hf extra: transformers asks for no torch; accelerate asks torch>=2.0, which the pinned one meets, so it stays.
"$PY" -m pip install -q -e ".[dev,postgres,hf,lightning]"
# mup's declared dependencies pull torchvision, which fails beside this torch; mup itself
# imports only numpy, pandas, pyyaml and torch, so install it without them.
"$PY" -m pip install -q --no-deps mup==1.0.0
"$PY" -m pip install -q pandas
"$PY" -c "import torch, optuna, mup, transformers, hptransfer; print('hptransfer', hptransfer.__version__, '| torch', torch.__version__, '| optuna', optuna.__version__, '| transformers', transformers.__version__)"
