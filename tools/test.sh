#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine, then run it.
# Extra arguments go to pytest, e.g.  bash tools/test.sh -k tiling
set -euo pipefail
cd "$(dirname "$0")/.."

# napari's canvas needs OpenGL: the GUI tests run under Xvfb with Mesa.  ImageJ (with the
# Java runtime it depends on) reads the batch engine's TIFF outputs in the hyperstack tests.
system_packages="imagej xvfb libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
  libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1"
# shellcheck disable=SC2086
if command -v apt-get >/dev/null && ! dpkg -s $system_packages >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends $system_packages
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[testing]"
exec .venv/bin/python -m pytest "$@"
