#!/usr/bin/env bash
# The qaudio demo: the audiovm-daemon on the embedded `wav` backend serving
# two qubes over the `unix` channel — `work` plays 440 Hz at 100 %, `personal`
# plays 660 Hz at 50 % (same amplitude, so the mix holds 440:660 at 2:1,
# -6 dB) — for a few seconds; prints each qube's counters and leaves the mix
# in a WAV file.
#
#   tools/demo.sh [--build DIR] [--out FILE] [--seconds N] [--protocol stock|native]
#   make demo            # = tools/demo.sh --build build --out demo-out.wav
#
# The qubes' side is qaudio-fake-agent (tests/tools), a test peer speaking
# the agent protocol, until the real agent replaces it. Processes are
# started as direct children and stopped by pid.
set -euo pipefail

BUILD=build
OUT=demo-out.wav
SECONDS_RUN=4
PROTOCOL=stock
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --protocol) PROTOCOL=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

DAEMON=$BUILD/audiovm-daemon/qubes-audiovm-daemon
AGENT=$BUILD/tests/tools/qaudio-fake-agent
for b in "$DAEMON" "$AGENT"; do
  if [ ! -x "$b" ]; then
    echo "demo: $b is missing: build first (make build)" >&2
    exit 1
  fi
done

TMP=$(mktemp -d /tmp/qaudio-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# The qubes serve their channels first (as real qubes do); the daemon
# connects and would retry with backoff if they were not up yet.
AGENT_SECONDS=$(awk "BEGIN { print $SECONDS_RUN + 2 }")
"$AGENT" --channel "unix:$TMP" --domid 1 --name work --protocol "$PROTOCOL" \
  --freq 440 --amplitude 0.3 --seconds "$AGENT_SECONDS" >"$TMP/work.out" &
PIDS+=($!)
"$AGENT" --channel "unix:$TMP" --domid 2 --name personal --protocol "$PROTOCOL" \
  --freq 660 --amplitude 0.3 --seconds "$AGENT_SECONDS" >"$TMP/personal.out" &
PIDS+=($!)

echo "demo: daemon on wav:$OUT, qubes work (440 Hz, 100 %) and personal (660 Hz, 50 %), ${SECONDS_RUN} s"
"$DAEMON" --channel "unix:$TMP" --backend "wav:$OUT" \
  --qube work=1 --qube personal=2 --volume personal=50 \
  --label work=blue --label personal=yellow --control "$TMP/control" \
  --duration "$SECONDS_RUN" >"$TMP/daemon.out"
echo "demo: per-qube counters:"
sed 's/^/  /' "$TMP/daemon.out"
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()
echo "demo: agents:"
sed 's/^/  /' "$TMP/work.out" "$TMP/personal.out"
echo "demo: wrote $OUT"
