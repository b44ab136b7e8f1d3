#!/usr/bin/env bash
# The qaudio demo: the audiovm-daemon on the embedded `wav` backend serving
# two qubes over the `unix` channel — `work` plays 440 Hz at 100 %, `personal`
# plays 660 Hz at 50 % (same amplitude, so the mix holds 440:660 at 2:1,
# -6 dB) — for a few seconds; prints each qube's counters and leaves the mix
# in a WAV file.
#
#   tools/demo.sh [--build DIR] [--out FILE] [--seconds N] [--protocol stock|native]
#                 [--agents alsa|fake]
#   make demo            # = tools/demo.sh --build build --out demo-out.wav
#
# The qubes' side (--agents alsa, the default when the plugin is built): in
# each "qube", `aplay -D qubes` plays a sox-made tone through the qaudio ALSA
# plugin, which runs the real agent core in aplay's process (no sound server
# needed). --agents fake uses qaudio-fake-agent (tests/tools), a test peer
# that speaks the agent protocol. Processes are started as direct children
# and stopped by pid.
set -euo pipefail

BUILD=build
OUT=demo-out.wav
SECONDS_RUN=4
PROTOCOL=stock
AGENTS=alsa
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --protocol) PROTOCOL=$2; shift 2 ;;
    --agents) AGENTS=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

DAEMON=$BUILD/audiovm-daemon/qubes-audiovm-daemon
AGENT=$BUILD/tests/tools/qaudio-fake-agent
PLUGIN=$(cd "$BUILD" && pwd)/audio-agent/libasound_module_pcm_qubes.so
if [ "$AGENTS" = alsa ] && { [ ! -f "$PLUGIN" ] || ! command -v aplay >/dev/null ||
                             ! command -v sox >/dev/null; }; then
  echo "demo: ALSA plugin, aplay or sox missing: using the fake agents" >&2
  AGENTS=fake
fi
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
# qube NAME DOMID FREQ: one qube's audio, served on its vchan ports.
qube() {
  local name=$1 domid=$2 freq=$3
  if [ "$AGENTS" = alsa ]; then
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/.asoundrc" <<EOF
pcm_type.qubes { lib "$PLUGIN" }
pcm.qubes { type qubes channel "unix:$TMP" domid $domid audiovm_domid 0 protocol "$PROTOCOL" }
EOF
    sox -q -n -r 48000 -c 2 -b 16 "$TMP/$name.wav" synth "$AGENT_SECONDS" sine "$freq" vol 0.3
    HOME="$TMP/$name" aplay -q -D qubes "$TMP/$name.wav" >"$TMP/$name.out" 2>&1 &
  else
    "$AGENT" --channel "unix:$TMP" --domid "$domid" --name "$name" --protocol "$PROTOCOL" \
      --freq "$freq" --amplitude 0.3 --seconds "$AGENT_SECONDS" >"$TMP/$name.out" &
  fi
  PIDS+=($!)
}
qube work 1 440
qube personal 2 660

echo "demo: daemon on wav:$OUT, qubes work (440 Hz, 100 %) and personal (660 Hz, 50 %), ${SECONDS_RUN} s, $PROTOCOL protocol, $AGENTS agents"
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
