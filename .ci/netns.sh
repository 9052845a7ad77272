#!/usr/bin/env bash
# A bench split over several hosts, on one machine: network namespaces stand in for the hosts.
#
#   bash .ci/netns.sh     (as root; needs iproute2 and python3)
#
# A namespace holds a bridge; the server's namespace and three load namespaces each hang off it
# by a veth pair, with addresses in 10.77.0.0/24 that exist only inside these namespaces. The
# server runs in one, and `sockecho bench --shard I/3 --start-at T` in each of the others, over
# TCP and then UDP, in open loop. The three logs are merged with `sockecho bench merge`, and the
# script checks that the merged counts are the shards' sums, that every byte was verified, that
# the shards' rates add up to the target and their sends to the target schedule, and that the
# shards measured the same period. Everything it created is removed on exit, failed or not.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${SOCKECHO_BIN:-target/debug/sockecho}
NET=10.77.0
SERVER_IP=$NET.1
SHARDS=3
CONNECTIONS=7        # shares 3, 2 and 2: the remainder goes to the first shard
RATE=3000            # messages per second over all shards
DURATION=2
WARMUP=0.5
TAG=se$$             # namespace names of this run only
HUB=$TAG-hub
SRV=$TAG-srv
WORK=$(mktemp -d)
PIDS=()

die() { echo "netns: $*" >&2; exit 1; }

cleanup() {
  local pid ns
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$SRV" "${LOADS[@]}" "$HUB"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
LOADS=()
for ((i = 0; i < SHARDS; i++)); do LOADS+=("$TAG-load$i"); done
trap cleanup EXIT
trap 'exit 1' INT TERM

[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
command -v ip >/dev/null || die "needs iproute2 (ip)"
if [ ! -x "$BIN" ]; then
  timeout 900 cargo build --locked -p sockecho-cli
fi

# attach NS ADDRESS: NS joins the bridge with ADDRESS/24 on its eth0.
attach() {
  local ns=$1 address=$2 port=p-${1##*-}
  ip netns add "$ns"
  ip -n "$HUB" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$HUB" link set "$port" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$address/24" dev eth0
  ip -n "$ns" link set eth0 up
}

ip netns add "$HUB"
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
attach "$SRV" "$SERVER_IP"
for ((i = 0; i < SHARDS; i++)); do attach "${LOADS[$i]}" "$NET.$((11 + i))"; done

ip netns exec "$SRV" timeout 120 "$BIN" serve -q "tcp://$SERVER_IP:54000" "udp://$SERVER_IP:54000" \
  >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
  # The background shell may not have created the log yet.
  [ "$(grep -c 'listening on' "$WORK/serve.log" 2>/dev/null)" = 2 ] && break
  sleep 0.1
done
[ "$(grep -c 'listening on' "$WORK/serve.log")" = 2 ] || { cat "$WORK/serve.log" >&2; die "the server did not start"; }

for scheme in tcp udp; do
  dir=$WORK/$scheme
  mkdir -p "$dir"
  # Far enough ahead for three processes to start and connect on a busy machine.
  start_at=$(date -u -d '+3 sec' +%Y-%m-%dT%H:%M:%S.%3NZ)
  shard_pids=()
  for ((i = 0; i < SHARDS; i++)); do
    ip netns exec "${LOADS[$i]}" timeout 60 "$BIN" bench "$scheme://$SERVER_IP:54000" \
      -c "$CONNECTIONS" --rate "$RATE" -d "${DURATION}s" --warmup "${WARMUP}s" \
      --shard "$i/$SHARDS" --start-at "$start_at" --json --save-hist "$dir/shard-$i.hlog" \
      >"$dir/shard-$i.json" 2>"$dir/shard-$i.err" &
    shard_pids+=($!)
  done
  for ((i = 0; i < SHARDS; i++)); do
    wait "${shard_pids[$i]}" || { cat "$dir/shard-$i.err" >&2; die "$scheme shard $i failed"; }
  done
  timeout 30 "$BIN" bench merge --json "$dir"/shard-*.hlog >"$dir/merged.json" 2>"$dir/merge.err" ||
    { cat "$dir/merge.err" >&2; die "$scheme: bench merge failed"; }
  if [ -s "$dir/merge.err" ]; then cat "$dir/merge.err" >&2; die "$scheme: bench merge warned"; fi
  python3 - "$dir" "$scheme" "$SHARDS" "$RATE" "$DURATION" "$start_at" "$NET" <<'EOF'
import datetime, json, sys

dir, scheme, shards, rate, duration, start_at, net = sys.argv[1:]
shards, rate, duration = int(shards), float(rate), float(duration)
reports = [json.load(open(f"{dir}/shard-{i}.json")) for i in range(shards)]
merged = json.load(open(f"{dir}/merged.json"))
problems = []

def check(ok, text):
    if not ok:
        problems.append(text)

for i, r in enumerate(reports):
    check(r.get("shard") == {"index": i, "count": shards}, f"shard {i}: shard field {r.get('shard')}")
    check(r["ok"], f"shard {i}: not every byte verified: {r['errors']}")
    bad = {k: v for k, v in r["errors"].items() if v and k != "late"}
    check(not bad, f"shard {i}: errors {bad}")
    check(r["messages_received"] == r["messages_sent"] > 0,
          f"shard {i}: {r['messages_received']} of {r['messages_sent']} received")
    check(r["connections_established"] == r["connections"], f"shard {i}: connections failed")

for field in ["messages_sent", "messages_received", "bytes_sent", "bytes_received",
              "connections", "connections_established"]:
    total = sum(r[field] for r in reports)
    check(merged[field] == total, f"merged {field} {merged[field]} != sum of shards {total}")
check(merged["ok"], "the merged report is not ok")
check(merged["runs"] == shards, f"merged runs {merged['runs']}")

# Open loop: the shards' rates are shares of the target, and their sends make its schedule.
shares = [r["rate"] for r in reports]
check(abs(sum(shares) - rate) < 1e-6, f"rate shares {shares} do not add up to {rate}")
check(abs(merged["rate"] - rate) < 1e-6, f"merged rate {merged['rate']}")
expected = rate * duration
check(abs(merged["messages_sent"] - expected) <= 0.01 * expected,
      f"{merged['messages_sent']} messages sent, the schedule has {expected:.0f}")

# One measured period: each began at --start-at plus the warm-up, all within 50 ms.
begin = datetime.datetime.fromisoformat(start_at.replace("Z", "+00:00")).timestamp()
starts = [r["start_unix_s"] for r in reports]
check(max(starts) - min(starts) < 0.05, f"measured periods began at {starts}")
warmup = reports[0]["warmup_s"]
for i, s in enumerate(starts):
    check(-0.002 <= s - (begin + warmup) < 0.05, f"shard {i} began {s - begin - warmup:.3f} s late")
check(abs(merged["duration_s"] - duration) < 0.05, f"merged period {merged['duration_s']} s")
# Intervals: every shard has them, they line up on the wall clock, and the merge keeps them
# aligned (one merged interval per shard interval, its messages the shards' added together).
lists = [r.get("intervals") or [] for r in reports]
check(all(lists), f"a shard report without intervals: {[len(l) for l in lists]}")
if all(lists):
    check(len({len(l) for l in lists}) == 1, f"interval counts {[len(l) for l in lists]}")
    for k in range(min(len(l) for l in lists)):
        at = [r["start_unix_s"] + l[k]["start_s"] for r, l in zip(reports, lists)]
        check(max(at) - min(at) < 0.05, f"interval {k} begins at {at}")
    merged_list = merged.get("intervals") or []
    check(len(merged_list) == len(lists[0]),
          f"{len(merged_list)} merged intervals, the shards have {len(lists[0])}")
    for k, m in enumerate(merged_list[:min(len(l) for l in lists)]):
        total = sum(l[k]["messages"] for l in lists)
        check(m["messages"] == total, f"merged interval {k}: {m['messages']} messages != {total}")
    check(sum(m["messages"] for m in merged_list) == merged["messages_received"],
          "the merged intervals do not add up to messages_received")

if problems:
    sys.exit(f"netns {scheme}: " + "; ".join(problems))
print(f"   {scheme}: {shards} shards from {net}.11-{net}.{10 + shards}: "
      f"{merged['messages_received']} messages verified at {merged['rate']:.0f}/s "
      f"(shares {', '.join(f'{s:.0f}' for s in shares)}), starts within "
      f"{1e6 * (max(starts) - min(starts)):.0f} µs")
EOF
done
echo "== netns: passed"
