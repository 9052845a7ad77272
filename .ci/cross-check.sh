#!/usr/bin/env bash
# CI: the workspace builds for FreeBSD and macOS, where the Linux-only system calls (io_uring,
# UDP GSO/GRO, the multi-message calls, timerfd) are left out. `cargo check` is enough: nothing
# is linked. Safe to run again: installed targets and tools are left as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(x86_64-unknown-freebsd x86_64-apple-darwin)
rustup target add "${targets[@]}" >/dev/null

# ring's build script compiles its C code for the target even for `cargo check`. The host's
# gcc does for FreeBSD; for macOS, without Apple's SDK, clang compiles it as x86-64 Linux code,
# which is never linked: the Rust code is what is being checked.
if ! command -v clang >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends clang >/dev/null
fi
export CC_x86_64_apple_darwin=clang
export AR_x86_64_apple_darwin=ar
export CFLAGS_x86_64_apple_darwin=--target=x86_64-unknown-linux-gnu

for target in "${targets[@]}"; do
  echo "== cargo clippy --target $target"
  cargo clippy --workspace --all-targets --locked --target "$target" -- -D warnings
done
