#!/usr/bin/env bash
# Runs the Python compatibility suite: the official shotgun_api3 client (and mockgun)
# against `shotgun-cache sim`.
#
#   tests/compat/run.sh [pytest args...]     e.g. run.sh -k mockgun -x
#
# Creates $REPO/.venv when missing and installs requirements.txt into it; builds the
# binary with cargo unless SHOTGUN_CACHE_BIN names one.  Works from any directory and
# exits non-zero when anything fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Quiet, and quick when everything is already installed at the pinned versions.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"

if [ -z "${SHOTGUN_CACHE_BIN:-}" ]; then
    (cd "$REPO" && cargo build --quiet -p shotgun-cache)
    export SHOTGUN_CACHE_BIN="$REPO/target/debug/shotgun-cache"
fi

# Without arguments naming tests, run the whole folder; paths given are taken relative to
# the caller's directory as usual.
paths=("$HERE")
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then paths=(); fi ;;
    esac
done
exec "$VENV/bin/python" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "${paths[@]}" "$@"
