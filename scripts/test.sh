#!/usr/bin/env bash
# The one command that sets up and runs every test of shotgun-cache:
# formatting, lints, the Rust tests, a quick smoke run of the benchmarks, and
# the Python compatibility suite with the real shotgun_api3 client (which
# creates its own venv). CI runs this same script through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# PostgreSQL: the PostgreSQL store's tests need it; start it if it is down.
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    step "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

# cargo-nextest runs the test binaries side by side (most tests wait on a
# site or a child process, so two cores go further that way); plain cargo
# test is the fallback where it is not installed.
if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest run"
  cargo nextest run --workspace --no-fail-fast
  step "doc tests"
  cargo test --workspace --doc
else
  step "cargo test"
  cargo test --workspace
fi

# The benchmarks' own code, run once on small data in the test profile: this
# checks that they still work without spending minutes on an optimised build
# (the figures of a smoke run mean nothing either way).
step "benchmarks, smoke run (small data, one pass each, test profile)"
SHOTGUN_BENCH_ROWS=20000 cargo test -p sg-engine --bench read
SYNC_BENCH_SMOKE=1 cargo test -p sg-sync --bench sync

step "Python compatibility suite (shotgun_api3 against shotgun-cache sim)"
SHOTGUN_CACHE_BIN="$PWD/target/debug/shotgun-cache" bash tests/compat/run.sh

step "all tests passed"
