# Shared by the bench scripts (sourced, from the repository root): a scanner on a copy of the
# sample packs, its memory, and a new bundle version.
#
#   samples_dir                         sets $work: a temporary directory (removed on exit, with
#                                       the server stopped) holding a copy of the packs in packs/
#   serve_samples BIN [SERVE ARGS...]   serves $work/packs; sets $port and $server, and waits
#                                       until it listens
#   status_kib FIELD                    the server's /proc status field in KiB (VmRSS, VmHWM)
#   rss                                 "<peak> kB peak, <now> kB now"
#   bump_version N                      sets the baseline pack's version to 1.0.N (a new bundle)

samples_dir() {
  work=$(mktemp -d)
  server=
  trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
  # The server reads a copy of the sample packs, so a script can change them.
  mkdir "$work/packs"
  cp config/samples/*.yaml "$work/packs/"
}

serve_samples() {
  local bin=$1
  shift
  port=$((20000 + RANDOM % 20000))
  "$bin" -f "$work/packs" serve --listen "127.0.0.1:$port" --log-format json "$@" 2> "$work/server.log" &
  server=$!
  for _ in $(seq 100); do
    grep -q '"listening"' "$work/server.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the server did not start; its log:" >&2
  cat "$work/server.log" >&2
  return 1
}

status_kib() {
  awk -v k="$1:" '$1 == k {print $2}' "/proc/$server/status"
}

rss() {
  echo "$(status_kib VmHWM) kB peak, $(status_kib VmRSS) kB now"
}

bump_version() {
  sed -i -E "s/^  version: \"1\.0\.[0-9]+\"/  version: \"1.0.$1\"/" "$work/packs/baseline-rulepack.yaml"
}
