#!/usr/bin/env python3
"""WebSocket in a real browser: headless Chromium's own WebSocket client against
`sockecho serve ws://` and `wss://` (its self-signed certificate, which Chromium is told to
accept). Browsers are where most WebSocket clients live, and the one implementation here that
sockecho's tests did not already meet through Python's `websockets`.

A page served by this script (Python's standard library) opens each endpoint and sends a text
message with non-ASCII characters, binary messages of 1 byte, 64 KiB and 1 MiB of random bytes,
then 200 small messages without waiting, and closes with code 1000. Every echo must come back
with the same type and exactly the same content, in order; the close must be clean with the
code sent. The page holds its own load event open (an image this script answers only once the
page has posted its results), so Chromium's `--dump-dom` waits for the checks; the results go
into the dumped DOM and are posted here too. The server's stop line must count the two
connections.

    python3 .ci/browser_ws.py PATH/TO/sockecho CHROMIUM

Prints one line per check and `browser ws: N passed, N failed`; exits 1 if any check failed.
"""

import http.server
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

WAIT = 10  # seconds for the server to start
RUN = 60  # seconds for the whole page

PAGE = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>sockecho WebSocket check</title></head>
<body>
<script>
"use strict";
const ENDPOINTS = %(endpoints)s;
const results = [];

function randomBytes(n) {
  const bytes = new Uint8Array(n);
  // getRandomValues fills at most 65,536 bytes per call.
  for (let at = 0; at < n; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(n, at + 65536)));
  }
  return bytes;
}

function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function check(url) {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let waiting = null;
  ws.onmessage = (event) => { inbox.push(event.data); if (waiting) { waiting(); waiting = null; } };
  let closeEvent = null;
  const closed = new Promise((resolve) => {
    ws.onclose = (event) => {
      closeEvent = event;
      if (waiting) { waiting(); waiting = null; }
      resolve(event);
    };
  });
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("cannot open " + url));
  });
  async function next() {
    while (inbox.length === 0) {
      if (closeEvent) {
        throw new Error("closed by the server, code " + closeEvent.code + " " + closeEvent.reason);
      }
      await new Promise((resolve) => { waiting = resolve; });
    }
    return inbox.shift();
  }
  const report = (name, ok, detail) => results.push({ url, name, ok, detail: detail || "" });

  const text = "h\u00e9llo, w\u00f6rld \u2713 \u2014 \u{1F600}";
  ws.send(text);
  const back = await next();
  report("a text message with non-ASCII characters comes back as the same text",
         typeof back === "string" && back === text, JSON.stringify(back));

  for (const size of [1, 65536, 1048576]) {
    const sent = randomBytes(size);
    ws.send(sent);
    const got = await next();
    report("a binary message of " + size + " random byte" + (size === 1 ? "" : "s") +
           " comes back byte for byte",
           got instanceof ArrayBuffer && same(new Uint8Array(got), sent),
           got instanceof ArrayBuffer ? got.byteLength + " bytes" : typeof got);
  }

  const many = [];
  for (let i = 0; i < 200; i++) { many.push("message " + i); ws.send(many[i]); }
  const echoed = [];
  for (let i = 0; i < 200; i++) echoed.push(await next());
  report("200 messages sent without waiting come back in order",
         echoed.every((m, i) => m === many[i]), echoed.find((m, i) => m !== many[i]));

  ws.close(1000, "done");
  const event = await closed;
  report("the close is clean, with the code sent", event.wasClean && event.code === 1000,
         "code " + event.code + ", clean " + event.wasClean);
}

(async () => {
  for (const url of ENDPOINTS) {
    try {
      await check(url);
    } catch (e) {
      results.push({ url, name: "the checks ran", ok: false, detail: String(e) });
    }
  }
  document.documentElement.setAttribute("data-results", JSON.stringify(results));
  await fetch("/results", { method: "POST", body: JSON.stringify(results) });
})();
</script>
<img src="/hold" alt="">
</body></html>
"""


class Page(http.server.BaseHTTPRequestHandler):
    page = b""
    results = None
    posted = threading.Event()

    def do_GET(self):
        if self.path == "/":
            self.reply(200, "text/html; charset=utf-8", Page.page)
        elif self.path == "/hold":
            # Answered once the page has posted its results: until then its load event waits.
            Page.posted.wait(RUN)
            self.reply(204, "image/gif", b"")
        else:
            self.reply(404, "text/plain", b"not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Page.results = json.loads(body)
        Page.posted.set()
        self.reply(204, "text/plain", b"")

    def reply(self, code, kind, body):
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser has gone already

    def log_message(self, *args):
        pass


def main():
    sockecho, chromium = sys.argv[1], sys.argv[2]
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        passed, failed = passed + bool(ok), failed + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))

    server = subprocess.Popen(
        [sockecho, "serve", "ws://127.0.0.1:0", "wss://127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True)
    log = []
    endpoints = []
    deadline = time.monotonic() + WAIT
    while len(endpoints) < 2 and time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        log.append(line)
        endpoints += re.findall(r"listening on (wss?://127\.0\.0\.1:\d+\S*)", line)
    reader = threading.Thread(target=lambda: log.extend(server.stderr), daemon=True)
    reader.start()
    if len(endpoints) < 2:
        server.kill()
        check("sockecho serve ws:// and wss:// starts", False, "".join(log))
        return 1
    Page.page = (PAGE % {"endpoints": json.dumps(endpoints)}).encode()
    http_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http_server.server_address[1]}/"
    with tempfile.TemporaryDirectory() as profile:
        argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                # The wss:// endpoint's certificate is the server's own self-signed one.
                "--ignore-certificate-errors", "--dump-dom", url]
        try:
            dom = subprocess.run(argv, capture_output=True, text=True, timeout=RUN).stdout
        except subprocess.TimeoutExpired:
            dom = ""
    http_server.shutdown()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(WAIT)
    except subprocess.TimeoutExpired:
        server.kill()
    reader.join(WAIT)

    results = Page.results
    check("the page ran its checks and posted the results", results is not None,
          "nothing posted within the deadline")
    if results is not None:
        mark = re.search(r'data-results="([^"]*)"', dom)
        check("the dumped DOM carries the same results", mark is not None and json.loads(
            mark.group(1).replace("&quot;", '"').replace("&amp;", "&")) == results,
            dom[-400:])
        for result in results:
            check(f"Chromium → {result['url'].split(':')[0]}: {result['name']}", result["ok"],
                  result["detail"])
        check("Chromium ran every check on both endpoints", len(results) == 2 * 6,
              f"{len(results)} results")
    stop = "".join(log)
    counted = re.search(r"stopped: (\d+) connections? .*?, (\d+) bytes echoed", stop)
    # Per endpoint: the text's UTF-8 bytes, the three binary messages and the 200 small ones.
    text = "h\u00e9llo, w\u00f6rld \u2713 \u2014 \U0001F600"
    each = (len(text.encode()) + 1 + 65536 + 1048576
            + sum(len(f"message {i}") for i in range(200)))
    check(f"the server's stop line counts both connections and {2 * each} bytes echoed",
          counted is not None and counted.groups() == ("2", str(2 * each)), stop[-600:])
    print(f"browser ws: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
