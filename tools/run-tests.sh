#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test:
# unit tests, tests on the real EAL with virtual devices, end-to-end tests
# through gatewayd between network namespaces, and the static lab checks.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== style"
# Formatting and lints are part of the test: a change that is not formatted,
# or that clippy warns about, fails here rather than in review (a toolchain
# without rustfmt or clippy says SKIP: the machine's one toolchain cannot
# fetch components offline).
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
else
    echo "SKIP  formatting: rustfmt is not installed (rustup component add rustfmt)"
fi

echo "== build"
cargo build --workspace --all-targets --locked 2>&1 | tail -n 3
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets --locked -q -- -D warnings
else
    echo "SKIP  lints: clippy is not installed (rustup component add clippy)"
fi

echo "== pktgen (for the pktgen lab tests, e2e_pktgen)"
rc=0
bash tools/pktgen.sh build >/dev/null || rc=$?
case $rc in
0) ;;
3) echo "SKIP  pktgen lab tests: no pktgen source (above); e2e_pktgen will say SKIP" ;;
*) echo "FAIL  pktgen did not build (above): e2e_pktgen will fail" ;;
esac

echo "== tests"
if command -v cargo-nextest >/dev/null; then
    # .config/nextest.toml runs the tests that own the EAL, namespaces or
    # fixed names one at a time.
    cargo nextest run --workspace --locked --profile ci
else
    cargo test --workspace --locked -- --test-threads=1
fi

echo "== lab checks"
bash tools/check-lab.sh
