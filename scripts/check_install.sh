#!/usr/bin/env bash
# What a user's install gives: build a wheel from this checkout the way pip does (no make
# step), install it into a fresh virtual environment, and use it: `spotex --help`, then a
# server started from the install and an SDK round trip against it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m pip wheel --no-deps -q -w "$work/dist" "$root"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/spotex-*.whl
"$work/venv/bin/spotex" --help > /dev/null
"$work/venv/bin/spotex" serve --help > /dev/null
cd "$work"  # away from the checkout: only the installed package can be imported
"$work/venv/bin/python" "$root/scripts/smoke_install.py"
echo "install check passed: wheel $(basename "$work"/dist/spotex-*.whl)"
