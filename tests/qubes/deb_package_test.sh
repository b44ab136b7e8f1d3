#!/bin/sh
# Builds the Debian packages from a copy of the source tree with
# `dpkg-buildpackage -us -uc -b`, installs them with dpkg into a scratch
# root (its own dpkg database; maintainer scripts run with DPKG_ROOT), and
# checks:
#   - the three packages were built, with their shared-library dependencies;
#   - the stock /usr/bin/pacat-simple-vchan is diverted to
#     pacat-simple-vchan.stock and ours (the launcher) takes its place;
#   - everything the units, the qrexec service and the ALSA snippet point at
#     is installed (install_layout_test.sh --root);
#   - removing qaudio-audiovm gives the stock file back.
# Exit 77 (skipped) without dpkg-buildpackage/debhelper.
#   deb_package_test.sh SOURCE_DIR
set -eu
src=$(cd "$1" && pwd)
for p in dpkg-buildpackage dpkg-deb dh dpkg-divert; do
  command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p missing (dpkg-dev, debhelper)"; exit 77; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/qaudio-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. A copy of the tree as git sees it (tracked and new files, no build dirs).
mkdir "$work/src"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$src" ls-files -z --cached --others --exclude-standard |
    (cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
    tar -C "$src" --null -T - -cf - | tar -C "$work/src" -xf -
else
  tar -C "$src" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -C "$work/src" -xf -
fi

# 2. The packages.
echo "building the packages (log: dpkg-buildpackage.log)"
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=${QAUDIO_DEB_JOBS:-2}" \
      dpkg-buildpackage -us -uc -b >"$work/dpkg-buildpackage.log" 2>&1); then
  tail -n 60 "$work/dpkg-buildpackage.log"
  echo "FAIL: dpkg-buildpackage -us -uc -b"
  exit 1
fi
for pkg in qaudio-audiovm qaudio-agent qaudio-net-bridge; do
  deb=$(ls "$work"/${pkg}_*.deb 2>/dev/null | head -n1)
  if [ -z "$deb" ]; then
    bad "$pkg: no .deb built"
    continue
  fi
  deps=$(dpkg-deb -f "$deb" Depends)
  case "$deps" in
    *libc6*) ;;
    *) bad "$pkg: Depends has no shared-library dependencies: '$deps'" ;;
  esac
  echo "$pkg: $(dpkg-deb -f "$deb" Version), Depends: $deps"
done
[ "$fails" -eq 0 ] || exit 1

# 3. Install into a scratch root that has the stock pacat-simple-vchan.
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/usr/bin"
: >"$root/var/lib/dpkg/status"
printf '#!/bin/sh\necho stock\n' >"$root/usr/bin/pacat-simple-vchan"
chmod 755 "$root/usr/bin/pacat-simple-vchan"
dpkg_root() {
  dpkg --root="$root" --force-not-root --force-depends --force-script-chrootless \
    --log=/dev/null "$@"
}
if ! dpkg_root -i "$work"/qaudio-audiovm_*.deb "$work"/qaudio-agent_*.deb \
  "$work"/qaudio-net-bridge_*.deb >"$work/dpkg.log" 2>&1; then
  cat "$work/dpkg.log"
  echo "FAIL: dpkg -i into the scratch root"
  exit 1
fi
dpkg_root -l 'qaudio-*' | grep -q '^ii  qaudio-audiovm' || bad "qaudio-audiovm not installed"
dpkg_root -l 'qaudio-*' | grep -q '^ii  qaudio-agent' || bad "qaudio-agent not installed"
[ -x "$root/usr/bin/qaudio-net-bridge" ] || bad "qaudio-net-bridge not installed"
[ "$(cat "$root/usr/bin/pacat-simple-vchan.stock" 2>/dev/null | tail -n1)" = "echo stock" ] ||
  bad "the stock pacat-simple-vchan was not diverted to pacat-simple-vchan.stock"
[ "$(readlink -f "$root/usr/bin/pacat-simple-vchan")" = "$(readlink -f "$root/usr/lib/qaudio/qubes-audio-launcher")" ] ||
  bad "/usr/bin/pacat-simple-vchan is not the qaudio launcher"
dpkg-divert --root="$root" --list 2>/dev/null | grep -q 'pacat-simple-vchan.stock' ||
  bad "no diversion recorded for pacat-simple-vchan"

# 4. The layout checks on what dpkg installed.
sh "$src/tests/qubes/install_layout_test.sh" --root "$root" "$src" || fails=$((fails + 1))

# 5. Removal gives the stock file back.
if dpkg_root -r qaudio-audiovm >"$work/dpkg-r.log" 2>&1; then
  [ "$(tail -n1 "$root/usr/bin/pacat-simple-vchan" 2>/dev/null)" = "echo stock" ] ||
    bad "after removal /usr/bin/pacat-simple-vchan is not the stock file again"
  [ ! -e "$root/usr/bin/qubes-audiovm-daemon" ] || bad "removal left qubes-audiovm-daemon"
else
  cat "$work/dpkg-r.log"
  bad "dpkg -r qaudio-audiovm"
fi

if [ "$fails" -ne 0 ]; then
  echo "$fails problem(s)"
  exit 1
fi
echo "Debian packages OK"
