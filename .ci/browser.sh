#!/usr/bin/env bash
# The HTML report in a real browser: runs `sockecho bench` against a local `sockecho serve`,
# draws the runs and a sweep made of real open-loop runs with `sockecho bench report`, and has
# headless Chromium (Debian's `chromium`, installed if missing) load the page with a checker
# script appended. The checker looks at what the browser laid out (each chart's size, each
# series' path length and place inside its plot, axis titles, tick labels, markers) and marks
# the document; the dumped DOM must carry that mark and no script error may be logged.
# Then Chromium's own WebSocket client against `sockecho serve ws:// wss://` (.ci/browser_ws.py:
# text, binary up to 1 MiB, 200 pipelined messages, a clean close; exact bytes and counts).
#
#   .ci/browser.sh [--screenshot FILE]   also save a screenshot of the report (docs/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."

screenshot=""
if [[ "${1:-}" == "--screenshot" ]]; then
  screenshot="$(realpath -m "${2:?--screenshot needs a file}")"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

cargo build --locked -p sockecho-cli
bin="$PWD/target/debug/sockecho"
work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve tcp://127.0.0.1:0 -q 2>"$work/serve.log" &
server=$!
endpoint=""
for _ in $(seq 100); do
  endpoint="$(grep -o 'listening on tcp://[0-9.:]*' "$work/serve.log" | head -n1 | sed 's/listening on //' || true)"
  [[ -n "$endpoint" ]] && break
  sleep 0.1
done
[[ -n "$endpoint" ]] || { echo "browser: the server did not start" >&2; cat "$work/serve.log" >&2; exit 1; }

echo "== runs against $endpoint"
"$bin" bench "$endpoint" -c 8 -d 1s --warmup 200ms --json >"$work/closed.json"
"$bin" bench "$endpoint" -c 8 --rate 4000 -d 1s --warmup 200ms --json \
  --save-hist "$work/open.hlog" --html "$work/run.html" >/dev/null
# A sweep in the agreed shape from three real open-loop runs; its find_max result is a stand-in
# that gives the page a highest-rate marker to draw.
steps=()
for rate in 1000 2000 4000; do
  "$bin" bench "$endpoint" -c 4 --rate "$rate" -d 500ms --warmup 100ms --json >"$work/step-$rate.json"
  steps+=("$(cat "$work/step-$rate.json")")
done
(
  IFS=,
  printf '{"sweep":{"rates":[1000,2000,4000],"steps":[%s],"stopped":null,' "${steps[*]}"
  printf '"find_max":{"target":"p99<1s","max_rate":3000}}}\n'
) >"$work/sweep.json"
"$bin" bench report "$work/closed.json" "$work/open.hlog" "$work/sweep.json" -o "$work/report.html"

# The checker runs in the page, after everything above it was parsed and laid out.
cat >"$work/check.js" <<'JS'
<script>
(function () {
  const problems = [];
  function chart(id, series, titles, markers) {
    const svg = document.getElementById(id);
    if (!svg) { problems.push("no chart " + id); return; }
    const box = svg.getBoundingClientRect();
    if (box.width < 300 || box.height < 150) problems.push(id + ": not laid out");
    const plot = svg.querySelector("rect.plot").getBBox();
    for (const name of series) {
      const sel = '[data-series="' + CSS.escape(name) + '"]';
      const path = svg.querySelector("path.series" + sel);
      if (!path) { problems.push(id + ": no series " + name); continue; }
      const b = path.getBBox();
      // A line, or for a series of one point its dot.
      if (!(path.getTotalLength() > 20) && !svg.querySelector("circle.dot" + sel)) {
        problems.push(id + ": series " + name + " not drawn");
      }
      if (b.x < plot.x - 1 || b.x + b.width > plot.x + plot.width + 1 ||
          b.y < plot.y - 1 || b.y + b.height > plot.y + plot.height + 1) {
        problems.push(id + ": series " + name + " outside its plot");
      }
      if (!svg.querySelector("text.legend-entry" + sel)) {
        problems.push(id + ": no legend entry for " + name);
      }
    }
    const shown = Array.from(svg.querySelectorAll("text.axis-title"), t => t.textContent);
    for (const t of titles) {
      if (!shown.some(s => s.startsWith(t))) problems.push(id + ": no axis title " + t);
    }
    if (svg.querySelectorAll("text.tick").length < 6) problems.push(id + ": too few tick labels");
    for (const m of markers) {
      if (!svg.querySelector('line.marker[data-marker="' + m + '"]')) problems.push(id + ": no " + m + " marker");
    }
  }
  // Every chart on the page (the time charts too, when the reports have intervals): laid out,
  // every series drawn inside its plot, axis titles and tick labels present.
  for (const svg of document.querySelectorAll("svg.chart")) {
    const names = Array.from(svg.querySelectorAll("path.series"), p => p.getAttribute("data-series"));
    if (names.length === 0) problems.push(svg.id + ": no series");
    chart(svg.id, names, [], []);
    if (svg.querySelectorAll("text.axis-title").length !== 2) problems.push(svg.id + ": axis titles missing");
  }
  chart("distribution", ["closed.json", "open.hlog"], ["percentile", "latency ("], []);
  chart("sweep-1", ["p50", "p99", "p99.9"], ["achieved round trips (msg/s)", "latency (log scale)"], ["max"]);
  const ticks = Array.from(document.querySelectorAll("#distribution text.x-tick"), t => t.textContent);
  for (const t of ["0%", "90%", "99%", "99.9%"]) {
    if (!ticks.includes(t)) problems.push("distribution: no tick " + t);
  }
  document.documentElement.setAttribute("data-check", problems.length ? "FAIL: " + problems.join("; ") : "OK");
})();
</script>
JS
page="$(cat "$work/report.html")"
{
  printf '%s' "${page%</body></html>*}"
  cat "$work/check.js"
  echo "</body></html>"
} >"$work/check.html"

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars
  --user-data-dir="$work/profile" --enable-logging=stderr --v=0)

echo "== chromium: the report with its checker"
"${chrome[@]}" --dump-dom "file://$work/check.html" >"$work/dom.html" 2>"$work/chromium.log"
fail=0
if ! grep -q 'data-check="OK"' "$work/dom.html"; then
  echo "browser: the checker did not pass: $(grep -o 'data-check="[^"]*"' "$work/dom.html" || echo 'no mark: the script did not run')" >&2
  fail=1
fi
if grep -E 'Uncaught|CONSOLE.*[Ee]rror' "$work/chromium.log" >&2; then
  echo "browser: script errors (above)" >&2
  fail=1
fi
# What the browser parsed: the charts' series and axis titles are in its DOM.
for want in 'data-series="closed.json"' 'data-series="open.hlog"' 'data-series="p99.9"' \
  '>percentile</text>' '>achieved round trips (msg/s)</text>' 'data-marker="knee"\|data-marker="max"'; do
  grep -q -- "$want" "$work/dom.html" || { echo "browser: the DOM lacks $want" >&2; fail=1; }
done
# The page of a run made with --html renders too.
"${chrome[@]}" --dump-dom "file://$work/run.html" >"$work/run-dom.html" 2>/dev/null
grep -q 'id="distribution"' "$work/run-dom.html" || { echo "browser: --html page has no chart" >&2; fail=1; }

if [[ -n "$screenshot" ]]; then
  "${chrome[@]}" --window-size=1280,1900 --screenshot="$screenshot" "file://$work/report.html" 2>/dev/null
  echo "screenshot: $screenshot"
fi
echo "== chromium: its WebSocket client against sockecho serve ws:// and wss://"
python3 .ci/browser_ws.py "$bin" chromium || fail=1

if [[ $fail -ne 0 ]]; then
  exit 1
fi
echo "browser: the report renders, every chart is drawn, and Chromium's WebSocket echoes are exact"
