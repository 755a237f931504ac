#!/usr/bin/env bash
# The declared floors, proven: a fresh venv holding every dependency of pyproject.toml (and of the
# export and explain extras) at its declared minimum, then a smoke test through the CLI (the console
# script's config reference; a tiny study: caches, pre-training, fine-tuning, an STFT input,
# calibration, evaluation, the report; then predict, export to ONNX and TorchScript, explain, model
# card). The pins come from .ci/floors.txt, which must match pyproject.toml (checked first); torch's
# floor, 2.13.0, is the CPU wheel on this machine's disk (pip's find-links), so nothing is multi-GB.
# Run by .ci/run; alone: bash .ci/floors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

python .ci/floors.py --check .ci/floors.txt
work=$(mktemp -d /tmp/ecg-floors.XXXXXX)
trap 'rm -rf "$work"' EXIT
python -m venv "$work/venv"
# -c: the floors, pinned; the package itself is installed from this checkout, not editable;
# --no-compile: no .pyc for the thousands of modules the smoke test never imports (torch's above all).
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile -c .ci/floors.txt ".[export,explain]"
installed=$SECONDS
"$work/venv/bin/python" tests/floors_smoke.py "$work/smoke"
echo "floors: venv + install $((installed - start)) s, smoke test $((SECONDS - installed)) s, $((SECONDS - start)) s in all"
