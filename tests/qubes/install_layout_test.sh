#!/bin/sh
# Installs the built tree (cmake --install, prefix /usr) into a scratch root
# and checks that what the packaging points at is there: every path of
# debian/*.install, every ExecStart/ExecStartPre of the systemd units, the
# bridge the qrexec service runs, the pacat-simple-vchan links, and that the
# installed launcher answers --help. With --root, checks a root the Debian
# packages were installed into instead (deb_package_test.sh).
#   install_layout_test.sh BUILD_DIR SOURCE_DIR
#   install_layout_test.sh --root ROOT SOURCE_DIR
set -eu
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
if [ "$1" = --root ]; then
  root=$2
  src=$3
else
  build=$1
  src=$2
  root=$(mktemp -d "${TMPDIR:-/tmp}/qaudio-root.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  DESTDIR=$root cmake --install "$build" --prefix /usr >"$root.log" 2>&1 || {
    cat "$root.log"; rm -f "$root.log"; echo "FAIL: cmake --install"; exit 1; }
  rm -f "$root.log"
fi

# 1. Every file the Debian packages take.
for f in "$src"/debian/*.install; do
  while read -r entry _; do
    [ -n "$entry" ] || continue
    # shellcheck disable=SC2086
    set -- "$root"/$entry
    if [ ! -e "$1" ]; then
      # usr/lib/*/alsa-lib: a non-multiarch build installs to usr/lib/alsa-lib.
      alt=$(echo "$entry" | sed 's#/\*/#/#')
      # shellcheck disable=SC2086
      set -- "$root"/$alt
      # dh_compress gzips manual pages and documents in the packages.
      [ -e "$1" ] || [ -e "$1.gz" ] || bad "$(basename "$f"): $entry not installed"
    fi
  done <"$f"
done

# 2. What the units start.
units=$(find "$root/usr/lib/systemd" -name '*.service' 2>/dev/null)
[ -n "$units" ] || bad "no systemd units installed"
for u in $units; do
  grep -E '^Exec(Start|StartPre)=' "$u" | sed -E 's/^[^=]+=[-@+!]*//; s/ .*//' |
    while read -r bin; do
      case "$bin" in
        /usr/bin/qubes-*|/usr/lib/qaudio/*|/usr/bin/qvm-*)
          [ -x "$root$bin" ] || { echo "FAIL: $(basename "$u") runs $bin: not installed"; exit 1; } ;;
        *) [ -x "$bin" ] || { echo "FAIL: $(basename "$u") runs $bin: not on this system"; exit 1; } ;;
      esac
    done || fails=$((fails + 1))
  if grep -q -- '--config' "$u"; then
    conf=$(grep -E '^ExecStart=' "$u" | sed -E 's/.*--config ([^ ]+).*/\1/')
    [ -f "$root$conf" ] || bad "$(basename "$u") reads $conf: not installed"
  fi
done

# 3. The qrexec service and the bridge it runs.
svc=$root/etc/qubes-rpc/qaudio.Control
[ -x "$svc" ] || bad "/etc/qubes-rpc/qaudio.Control missing or not executable"
bridge=$(sed -n 's/.*QAUDIO_CONTROL_BRIDGE:-\([^}]*\)}.*/\1/p' "$svc" | head -n1)
[ -n "$bridge" ] && [ -x "$root$bridge" ] || bad "qaudio.Control runs '$bridge': not installed"

# 4. The pacat-simple-vchan drop-in.
l=$root/usr/lib/qaudio/bin/pacat-simple-vchan
[ -L "$l" ] && [ -x "$l" ] || bad "usr/lib/qaudio/bin/pacat-simple-vchan does not resolve"
while read -r target link; do
  [ -x "$root/$target" ] || bad "debian link $link -> $target: target not installed"
done <"$src/debian/qaudio-audiovm.links"
"$l" --help >/dev/null || bad "the installed launcher does not answer --help"
"$l" 0 work >/dev/null 2>&1 && bad "the installed launcher accepted domid 0"

[ -f "$root/usr/share/doc/qaudio/examples/30-qaudio.policy" ] || bad "example dom0 policy missing"
[ -f "$root/usr/share/doc/qaudio/qubes.md" ] || [ -f "$root/usr/share/doc/qaudio/qubes.md.gz" ] ||
  bad "docs/qubes.md not installed"

if [ "$fails" -ne 0 ]; then
  echo "$fails problem(s); installed tree:"; (cd "$root" && find . | sort)
  exit 1
fi
echo "install layout OK"
