#!/usr/bin/env bash
# Build the conclave container image without pulling anything: a release build, stripped,
# plus the shared libraries `ldd` names, CA certificates and a passwd entry for the non-root
# user, staged as a root filesystem and copied onto `FROM scratch` (deploy/image/Dockerfile).
#
#   deploy/build-image.sh [TAG]        # default tag: conclave:latest
#
# Prints the image's size; fails when it is over 42 MB (MiB: 40.1 with the binary at 36.8).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-conclave:latest}
MAX_MB=42

cargo build --release -q -p conclave
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/conclave-image.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/rootfs
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/ssl/certs" "$ROOT/tmp" "$STAGE/data"
BIN=${CARGO_TARGET_DIR:-target}/release/conclave
if command -v objcopy >/dev/null; then
  objcopy --strip-debug "$BIN" "$ROOT/usr/local/bin/conclave"
else
  cp "$BIN" "$ROOT/usr/local/bin/conclave"
fi

# The dynamic loader and every library the binary links, at the paths it looks for them.
ldd "$BIN" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | while read -r lib; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done

if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
else
  echo "warning: no /etc/ssl/certs/ca-certificates.crt on this machine; the image has no CA bundle" >&2
fi
printf 'root:x:0:0:root:/:/sbin/nologin\nconclave:x:10001:10001:conclave:/data:/sbin/nologin\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nconclave:x:10001:\n' >"$ROOT/etc/group"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
chmod 700 "$STAGE/data"
chmod 1777 "$ROOT/tmp"

cp deploy/image/Dockerfile "$STAGE/"
docker build -q -t "$TAG" "$STAGE" >/dev/null
bytes=$(docker image inspect -f '{{.Size}}' "$TAG")
mb=$(( (bytes + 1048575) / 1048576 ))
echo "$TAG: ${mb} MB"
if [ "$mb" -gt "$MAX_MB" ]; then
  echo "the image is ${mb} MB, over the ${MAX_MB} MB budget" >&2
  exit 1
fi
