# Sourced by the bench/*.sh scripts that measure a server they are given as a command.
# start_server COMMAND...: runs COMMAND with its standard error in "$dir/log" ($dir must exist),
# sets $server to its pid and $endpoint to the first `tcp://HOST:PORT` of its `listening on`
# line (waiting up to 10 s for it); exits 1 if none came.
start_server() {
  "$@" 2>"$dir/log" &
  server=$!
  for _ in $(seq 100); do grep -q "listening on" "$dir/log" && break; sleep 0.1; done
  endpoint=$(grep -o "tcp://[0-9.]*:[0-9]*" "$dir/log" | head -1)
  [ -n "$endpoint" ] || { echo "the server printed no 'listening on tcp://' line" >&2; exit 1; }
}
