#!/usr/bin/env bash
# Installs the Debian package on this machine and runs what it installed, as a new user would:
# the man pages, the completions, the desktop entry, `extrasafe demo` (a real call between
# two local peers) and the desktop's first screen on a private X screen (Xvfb), screenshotted.
# Removes the package again at the end. Needs root (or sudo), apt, Xvfb and imagemagick.
#
#   bash packaging/test_install.sh target/debian/extrasafe_*.deb
set -euo pipefail
deb=$(realpath "${1:?usage: test_install.sh PACKAGE.deb}")
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
work=$(mktemp -d)
xvfb_pid=""; app_pid=""
cleanup() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
  $sudo dpkg -r extrasafe >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== install $(basename "$deb")"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
[ "$(command -v extrasafe)" = /usr/bin/extrasafe ] || fail "extrasafe is not /usr/bin/extrasafe"
[ "$(command -v extrasafe-desktop)" = /usr/bin/extrasafe-desktop ] || fail "no extrasafe-desktop"
/usr/bin/extrasafe --version
/usr/bin/extrasafe-desktop --version

echo "== man pages, completions, desktop entry"
for page in extrasafe extrasafe-call extrasafe-listen extrasafe-contact-add extrasafe-desktop; do
  f=/usr/share/man/man1/$page.1.gz
  zcat "$f" | grep -q '^\.TH' || fail "$f is not a man page"
done
zcat /usr/share/man/man1/extrasafe-call.1.gz | grep -q 'ring\\-timeout' || fail "call page lacks --ring-timeout"
# Completing `extrasafe ca` offers `call`, through the installed bash completion.
got=$(bash -c '. /usr/share/bash-completion/completions/extrasafe
  COMP_WORDS=(extrasafe ca); COMP_CWORD=1; COMP_LINE="extrasafe ca"; COMP_POINT=${#COMP_LINE}
  _extrasafe extrasafe ca extrasafe; printf "%s\n" "${COMPREPLY[@]}"')
echo "$got" | grep -qx call || fail "bash completion of 'extrasafe ca' gave: $got"
[ -s /usr/share/zsh/vendor-completions/_extrasafe ] || fail "no zsh completion"
[ -s /usr/share/fish/vendor_completions.d/extrasafe.fish ] || fail "no fish completion"
entry=/usr/share/applications/extrasafe.desktop
grep -qx 'Exec=extrasafe-desktop' "$entry" || fail "desktop entry does not run extrasafe-desktop"
grep -qx 'Icon=extrasafe' "$entry" || fail "desktop entry names no icon"
[ -s /usr/share/icons/hicolor/scalable/apps/extrasafe.svg ] || fail "no icon"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$entry"; fi

echo "== the installed extrasafe demo (a real call on loopback)"
HOME="$work/home" XDG_DATA_HOME="$work/home/data" /usr/bin/extrasafe demo --seconds 5 \
  --audio-out "$work/received.wav" --json > "$work/demo.json"
# The callee's recording matches what the caller sent, and pictures came through both ways.
python3 - "$work/demo.json" <<'PY' || fail "the installed demo's call did not carry its media"
import json, sys
ev = {e["event"]: e for e in map(json.loads, open(sys.argv[1]))}
assert "demo_done" in ev, ev.keys()
assert ev["audio_done"]["correlation"] > 0.8, ev["audio_done"]
assert all(d["shown"] > 0 for d in ev["video_done"]["directions"]), ev["video_done"]
print(f"demo: audio correlation {ev['audio_done']['correlation']:.3f}, pictures shown",
      [d["shown"] for d in ev["video_done"]["directions"]])
PY
[ -s "$work/received.wav" ] || fail "the demo's callee wrote no audio"

echo "== the installed desktop app's first screen (Xvfb)"
exec 3< <(Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp 2>/dev/null & echo "pid $!"; wait)
read -r _ xvfb_pid <&3
read -r display <&3
export DISPLAY=":$display"
mkfifo "$work/actions"
HOME="$work/home" WAYLAND_DISPLAY="" /usr/bin/extrasafe-desktop --automation --no-dht --no-lan \
  --no-sound --bind 127.0.0.1 --port 0 --data-dir "$work/identity" --files-dir "$work/rx" \
  < "$work/actions" > "$work/states.json" 2> "$work/desktop.log" &
app_pid=$!
exec 4> "$work/actions"   # keeps the app's stdin open
for _ in $(seq 120); do
  grep -q '"stage":"firstrun"' "$work/states.json" 2>/dev/null && break
  kill -0 "$app_pid" 2>/dev/null || { cat "$work/desktop.log"; fail "extrasafe-desktop exited"; }
  sleep 0.5
done
grep -q '"stage":"firstrun"' "$work/states.json" || { tail -c 2000 "$work/states.json"; cat "$work/desktop.log"; fail "no first screen"; }
sleep 1   # the state is printed as the frame is drawn; let it reach the screen
shot=${SCREENSHOT_DIR:-target/desktop-screenshots}/installed-first-run.png
mkdir -p "$(dirname "$shot")"
import -display "$DISPLAY" -window root "$shot"
colours=$(identify -format '%k' "$shot")
[ "$colours" -gt 16 ] || fail "the screenshot is blank ($colours colours)"
echo "first screen shown: $shot ($colours colours)"
exec 4>&-

echo "== remove"
$sudo dpkg -r extrasafe >/dev/null
[ ! -e /usr/bin/extrasafe ] || fail "removing left /usr/bin/extrasafe"
echo "installed package passed"
