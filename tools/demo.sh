#!/usr/bin/env bash
# From a fresh clone: install the package into .venv and segment the bundled nuclei sample
# with the bundled model.  Results go to ./demo-output (labels TIFF and a PNG overlay).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/napari-tiled-unet demo -o demo-output "$@"
