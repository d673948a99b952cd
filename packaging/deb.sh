#!/usr/bin/env bash
# One command builds the Debian package of EXTRA SAFE: both programs (`extrasafe`,
# `extrasafe-desktop`), their man pages and shell completions (made from their own option
# grammar by `extrasafe-docs`), the desktop entry and the icon.
#
#   bash packaging/deb.sh                  # release build -> target/debian/extrasafe_*.deb
#   bash packaging/deb.sh --profile dev    # reuse the test build (what CI packages)
#
# Installs cargo-deb (a cargo subcommand, about 45 s to build) into target/tools when it is
# not on PATH. Then: sudo apt install ./target/debian/extrasafe_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
# Cargo puts the dev profile's output in target/debug, any other in target/<profile>.
outdir=$profile; [ "$profile" = dev ] && outdir=debug
target=${CARGO_TARGET_DIR:-target}

if ! cargo deb --version >/dev/null 2>&1; then
  if [ ! -x "$target/tools/bin/cargo-deb" ]; then
    echo "== installing cargo-deb into $target/tools"
    cargo install cargo-deb --version 3.8.0 --locked --quiet --root "$target/tools"
  fi
  export PATH="$PWD/$target/tools/bin:$PATH"
fi

echo "== building extrasafe and extrasafe-desktop ($profile)"
cargo build --locked --profile "$profile" -p extrasafe --bin extrasafe \
  -p extrasafe-desktop --bin extrasafe-desktop -p extrasafe-packaging --bin extrasafe-docs

echo "== man pages and completions"
docs="$target/$outdir/package-docs"
rm -rf "$docs"
"$target/$outdir/extrasafe-docs" "$docs"
gzip -9n "$docs"/man/*.1

echo "== package"
# Stripped: the release profile keeps line tables for backtraces, which a package does not need.
cargo deb --no-build --profile "$profile" -p extrasafe --output "$target/debian/" --no-dbgsym --strip
ls -l "$target"/debian/extrasafe_*.deb
