#!/usr/bin/env bash
# Install everything dittomusic needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# FluidSynth + the FluidR3 General MIDI soundfont and Chromium (apt), torch 2.13.0, then this package.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# chromium: the headless browser the web app's tests drive (playwright never downloads its own)
if ! dpkg -s fluidsynth fluid-soundfont-gm chromium >/dev/null 2>&1; then
  echo "setup: installing fluidsynth, fluid-soundfont-gm and chromium (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    fluidsynth fluid-soundfont-gm chromium >/dev/null
fi

PY=${PYTHON:-python3}
# torch first, pinned: every later install then sees a satisfied requirement and never
# pulls a different (e.g. multi-GB CUDA) build over it.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
"$PY" - <<'PYEOF'
import sys, torch
if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"setup: expected torch 2.13.0, found {torch.__version__}: a dependency replaced it")
PYEOF
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi  # expose the new console script
echo "setup: ok (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
