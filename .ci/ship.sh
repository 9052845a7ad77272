#!/usr/bin/env bash
# Packaging: static musl binaries for x86_64 and aarch64, the OCI image for both, and the
# Kubernetes manifests — each built and then tested, on a fresh Debian machine as root.
#
#   bash .ci/ship.sh          everything (what .ci/run calls)
#   bash .ci/ship.sh build    tools, the two binaries and the image context in target/image/ only
#
# Every step runs under `timeout`; any failure exits non-zero. Idempotent: tools already
# installed and binaries already built are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SELF=$ROOT/.ci/ship.sh

TRIPLES=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
declare -A ARCH=([x86_64-unknown-linux-musl]=amd64 [aarch64-unknown-linux-musl]=arm64)
IMAGE=localhost/sockecho-ship-test
WORK=$ROOT/target/ship            # scratch space of this script: logs, venv, container storage
CONTEXT_DIR=$ROOT/target/image    # what the Containerfile copies (see .dockerignore)

# ring compiles C: point the cc crate and the linker at the musl / cross toolchains.
export CC_x86_64_unknown_linux_musl=musl-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CARGO_TERM_COLOR=never NO_COLOR=1

mkdir -p "$WORK"
# step SECONDS NAME FUNCTION ARGS...: runs one of the functions below in a fresh shell under a
# deadline (timeout cannot run a function itself) and prints its time.
step() {
  local limit=$1 name=$2
  shift 2
  local t0=$SECONDS
  echo "== ship: $name"
  if ! timeout --kill-after=10 "$limit" bash "$SELF" __run "$@"; then
    echo "ship: FAILED: $name (after $((SECONDS - t0))s; limit ${limit}s)" >&2
    exit 1
  fi
  echo "   ship: $name took $((SECONDS - t0))s"
}
die() { echo "ship: $*" >&2; exit 1; }

install_tools() {
  local need=0 cmd
  for cmd in musl-gcc aarch64-linux-gnu-gcc qemu-aarch64-static buildah file; do
    command -v "$cmd" >/dev/null || need=1
  done
  if [ "$need" = 1 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static buildah file \
      >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log"; return 1; }
  fi
  rustup target add "${TRIPLES[@]}" >/dev/null
}

# Both targets in one cargo run, so build scripts and proc macros are compiled once.
build_binaries() {
  cargo build --release --locked -p sockecho-cli "${TRIPLES[@]/#/--target=}"
}

check_binaries() {
  local triple bin desc
  for triple in "${TRIPLES[@]}"; do
    bin=target/$triple/release/sockecho
    desc=$(file -b "$bin")
    echo "   $triple: $(stat -c %s "$bin") bytes: $desc"
    case $desc in
      *"statically linked"* | *"static-pie linked"*) ;;
      *) die "$bin is not statically linked" ;;
    esac
  done
}

stage_context() {
  local triple
  rm -rf "$CONTEXT_DIR"
  mkdir -p "$CONTEXT_DIR/etc"
  for triple in "${TRIPLES[@]}"; do
    install -D -m 0555 "target/$triple/release/sockecho" "$CONTEXT_DIR/linux/${ARCH[$triple]}/sockecho"
  done
  echo 'sockecho:x:65532:65532:sockecho:/nonexistent:/sbin/nologin' >"$CONTEXT_DIR/etc/passwd"
  echo 'sockecho:x:65532:' >"$CONTEXT_DIR/etc/group"
  du -sh "$CONTEXT_DIR"
}

# wait_for_log FILE REGEX: waits until FILE has a line matching REGEX and prints the match.
wait_for_log() {
  local file=$1 regex=$2 i
  for ((i = 0; i < 300; i++)); do
    if grep -Eo "$regex" "$file" 2>/dev/null | head -1 | grep .; then return 0; fi
    sleep 0.1
  done
  echo "ship: no line matching '$regex' in $file:" >&2
  cat "$file" >&2
  return 1
}

# stop_server PID LOG: SIGTERM, then exit code 0 and the drain's log lines.
stop_server() {
  local pid=$1 log=$2 rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { cat "$log" >&2; die "server exited $rc after SIGTERM"; }
  grep -q 'received SIGTERM' "$log" || { cat "$log" >&2; die "no 'received SIGTERM' in the log"; }
  grep -q 'stopped: ' "$log" || { cat "$log" >&2; die "no 'stopped:' drain summary in the log"; }
}

# echo_checks CLIENT... TCP_PORT UDP_PORT: a TCP pipe echo and a UDP echo through the client
# command given.
echo_checks() {
  local tcp=${*: -2:1} udp=${*: -1} out
  local client=("${@:1:$#-2}")
  out=$(printf 'hello\n' | timeout 20 "${client[@]}" client "tcp://127.0.0.1:$tcp")
  [ "$out" = hello ] || die "TCP echo returned '$out', expected 'hello'"
  out=$(printf 'one\ntwo\n' | timeout 20 "${client[@]}" client "udp://127.0.0.1:$udp")
  [ "$out" = $'one\ntwo' ] || die "UDP echo returned '$out', expected 'one' and 'two'"
}

# smoke_test NAME RUNNER...: --version, serve on loopback, TCP and UDP echo, a short bench,
# SIGTERM drain — all with the binary RUNNER names (possibly under qemu).
smoke_test() {
  local name=$1
  shift
  local log=$WORK/serve-$name.log tcp udp pid version
  version=$("$@" --version)
  echo "   $name: $version"
  [[ $version == sockecho* ]] || die "$name --version printed '$version'"
  "$@" serve tcp://127.0.0.1:0 udp://127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  tcp=$(wait_for_log "$log" 'listening on tcp://127\.0\.0\.1:[0-9]+' | grep -Eo '[0-9]+$')
  udp=$(wait_for_log "$log" 'listening on udp://127\.0\.0\.1:[0-9]+' | grep -Eo '[0-9]+$')
  grep -o 'stream I/O: [a-z_]*' "$log" | sed 's/^/   /' || true
  echo_checks "$@" "$tcp" "$udp"
  "$@" bench "tcp://127.0.0.1:$tcp" -c 2 -d 1s --json >"$WORK/bench-$name.json"
  python3 - "$WORK/bench-$name.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
errors = {k: v for k, v in report["errors"].items() if k != "late" and v}
if errors or not report["ok"] or report["messages_received"] == 0:
    sys.exit(f"bench: errors {errors}, ok {report['ok']}, received {report['messages_received']}")
print(f"   bench: {report['messages_received']} messages echoed, no errors")
EOF
  stop_server "$pid" "$log"
}

render_and_validate() {
  local venv=$WORK/venv dir out
  if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 PyYAML==6.0.3
  fi
  for dir in deploy/kubernetes deploy/kubernetes/overlays/network-policy; do
    out=$WORK/rendered-${dir//\//_}.yaml
    "$venv/bin/python" .ci/render_kustomize.py "$dir" >"$out"
    if command -v kubectl >/dev/null && kubectl kustomize "$dir" >"$out.kubectl" 2>/dev/null; then
      "$venv/bin/python" .ci/render_kustomize.py "$dir" --check-against "$out.kubectl"
    fi
    # 1.33: the oldest release still maintained upstream; 1.37: the newest the validator knows.
    "$venv/bin/kubernetes-validate" --strict --quiet -k 1.33.0 "$out"
    "$venv/bin/kubernetes-validate" --strict --quiet -k 1.37.0 "$out"
    echo "   $dir: $(grep -c '^kind:' "$out") objects valid for Kubernetes 1.33 and 1.37"
  done
}

bah() { buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs "$@"; }

cleanup_images() {
  if [ -d "$WORK/storage" ]; then
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
    umount -R "$WORK/ro-root" 2>/dev/null || true
    rm -rf "$WORK/storage" "$WORK/run"
  fi
}

build_images() {
  local triple arch
  cleanup_images
  for triple in "${TRIPLES[@]}"; do
    arch=${ARCH[$triple]}
    bah bud --quiet --isolation chroot --platform "linux/$arch" -f Containerfile -t "$IMAGE:$arch" . >/dev/null
  done
  bah manifest create "$IMAGE:list" >/dev/null
  for triple in "${TRIPLES[@]}"; do
    bah manifest add "$IMAGE:list" "containers-storage:$IMAGE:${ARCH[$triple]}" >/dev/null
  done
  local arches
  arches=$(bah manifest inspect "$IMAGE:list" |
    python3 -c 'import json,sys; print(" ".join(sorted(m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')
  [ "$arches" = "amd64 arm64" ] || die "manifest list has architectures '$arches', expected amd64 arm64"
  echo "   manifest list: $arches"
}

# Runs the amd64 image's filesystem the way a runtime would: as 65532, on a read-only root.
test_image() {
  local ctr root ro=$WORK/ro-root log=$WORK/serve-image.log pid port config
  config=$(bah inspect --type image "$IMAGE:amd64")
  python3 -c '
import json, sys
c = json.loads(sys.argv[1])["OCIv1"]["config"]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/sockecho"], c["Entrypoint"]
assert c["StopSignal"] == "SIGTERM", c.get("StopSignal")
assert set(c["ExposedPorts"]) == {"54000/tcp", "54000/udp", "9154/tcp"}, c["ExposedPorts"]
' "$config" || die "the image config is not what the Containerfile says"
  ctr=$(bah from --quiet --pull-never "$IMAGE:amd64")
  root=$(bah mount "$ctr")
  # Nothing but the binary and the passwd/group pair: no shell, no libc, no package manager.
  local files
  files=$(cd "$root" && find . -mindepth 1 | sort | tr '\n' ' ')
  [ "$files" = "./etc ./etc/group ./etc/passwd ./sockecho " ] || die "unexpected files in the image: $files"
  echo "   image files: $files"
  mkdir -p "$ro"
  mount --bind "$root" "$ro"
  mount -o remount,bind,ro "$ro"
  if touch "$ro/probe" 2>/dev/null; then die "the bind mount of the image root is writable"; fi

  chroot --userspec=65532:65532 "$ro" /sockecho serve --metrics 127.0.0.1:0 \
    tcp://127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  port=$(wait_for_log "$log" 'listening on tcp://127\.0\.0\.1:[0-9]+' | grep -Eo '[0-9]+$')
  [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" = 65532 ] || die "the server does not run as uid 65532"
  local metrics
  metrics=$(wait_for_log "$log" 'metrics on http://127\.0\.0\.1:[0-9]+' | grep -Eo '[0-9]+$')
  out=$(printf 'hello\n' | timeout 20 "target/x86_64-unknown-linux-musl/release/sockecho" client "tcp://127.0.0.1:$port")
  [ "$out" = hello ] || die "echo through the image returned '$out'"
  python3 -c "import urllib.request as u; assert u.urlopen('http://127.0.0.1:$metrics/readyz', timeout=5).status == 200"
  stop_server "$pid" "$log"
  echo "   image: uid 65532, read-only root, echo, /readyz, SIGTERM drain with exit 0"

  # The image's own CMD, in a network namespace of its own so its fixed ports are free.
  local cmd netns=()
  cmd=$(python3 -c "import json,sys; print(' '.join(json.loads(sys.argv[1])['OCIv1']['config']['Cmd']))" "$config")
  unshare --net true 2>/dev/null && netns=(unshare --net)
  : >"$log"
  # shellcheck disable=SC2086 # CMD's words (no spaces inside any) are the arguments.
  "${netns[@]}" chroot --userspec=65532:65532 "$ro" /sockecho $cmd >"$log" 2>&1 &
  pid=$!
  wait_for_log "$log" 'listening on tcp://[^ ]+:54000' >/dev/null
  wait_for_log "$log" 'listening on udp://[^ ]+:54000' >/dev/null
  wait_for_log "$log" 'metrics on http://0\.0\.0\.0:9154' >/dev/null
  stop_server "$pid" "$log"
  echo "   image CMD ($cmd): listens on 54000/tcp, 54000/udp and metrics 9154${netns:+ (own network namespace)}"

  umount "$ro"
  bah umount "$ctr" >/dev/null
  bah rm "$ctr" >/dev/null
}

if [ "${1:-}" = __run ]; then
  shift
  # A server a failed or timed-out step started must not outlive it.
  trap 'exit 1' TERM INT
  trap 'jobs -p | xargs -r kill 2>/dev/null' EXIT
  "$@"
  exit
fi
WHAT=${1:-all}
START=$SECONDS

step 600 "tools (apt: musl-tools, gcc-aarch64-linux-gnu, qemu-user-static, buildah; rustup targets)" install_tools
step 1500 "release build, ${TRIPLES[*]}" build_binaries
step 30 "static linking and sizes" check_binaries
step 30 "image context in target/image" stage_context
[ "$WHAT" = build ] && exit 0

step 120 "x86_64 binary: serve, TCP/UDP echo, bench, drain" smoke_test x86_64 target/x86_64-unknown-linux-musl/release/sockecho
step 300 "aarch64 binary under qemu: serve, TCP/UDP echo, bench, drain" \
  smoke_test aarch64 qemu-aarch64-static target/aarch64-unknown-linux-musl/release/sockecho
step 300 "kubernetes: render and validate" render_and_validate
trap cleanup_images EXIT
step 300 "image: buildah bud amd64 + arm64, manifest list" build_images
step 120 "image: run as 65532 on a read-only root" test_image
step 60 "image: clean up" cleanup_images
echo "== ship: all passed in $((SECONDS - START))s"
