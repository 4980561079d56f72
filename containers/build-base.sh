#!/usr/bin/env bash
# Build the node image's base without a registry: Debian bookworm (minbase) plus what every node needs
# from Debian, made by mmdebstrap from a Debian mirror and imported into the local Docker engine.
# testbed/images/base.py runs this when the base is missing or this file changed (the image's label
# org.voip-testbed.base-recipe holds the first 16 hex digits of this file's sha256); you can also run
# it by hand.
#
# Usage: containers/build-base.sh [IMAGE]        (default voip-testbed-base:bookworm)
# Needs: root, mmdebstrap (eatmydata makes it ~2x faster), a docker CLI and engine, a Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian) and its security suite (DEBIAN_SECURITY_MIRROR,
# default http://deb.debian.org/debian-security). Takes 45-55 s; the image is ~805 MB (130 MB without
# chromium, its GTK and Mesa dependencies).
#
# mmdebstrap rather than debootstrap: same package set (its minbase variant resembles debootstrap's),
# but apt resolves the packages and dpkg runs without fsync under eatmydata (about half the time), it
# leaves no apt lists or caches behind and keeps docs out (path-exclude) instead of deleting them.
set -euo pipefail

IMAGE=${1:-voip-testbed-base:bookworm}
SUITE=bookworm  # its python3 is 3.11, the version the host builds the wheelhouse with
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian updates chromium in bookworm-security (bookworm itself keeps an old release); the host's comes from there
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# keep in step with DEBS in containers/Dockerfile (there they are installed only when a base lacks them).
# chromium: the WebRTC endpoint playwright drives (never a browser playwright downloads); its Depends
# bring a font (fonts-dejavu-core via fontconfig), which is all headless pages need. libatomic1: the
# node binary in playwright's wheel links it
PACKAGES=python3,python3-venv,iproute2,iptables,libopus0,ca-certificates,chromium,libatomic1,coturn
RECIPE=$(sha256sum "$0" | cut -c1-16)
HOOKS=/usr/share/mmdebstrap/hooks
# mmdebstrap's own progress lines that say nothing to a user
QUIET='^I: (running --[a-z]+-hook|using /|removing tempdir|chroot architecture|finding correct|automatically chosen)'

say() { echo "build-base: $*"; }
die() { echo "build-base: $*" >&2; exit 3; }

[ "$(id -u)" -eq 0 ] || die "building the base image needs root; run as root (sudo)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing; install it: apt-get install mmdebstrap (or sudo containers/provision-docker.sh)"
command -v docker >/dev/null || die "the docker CLI is missing; install it: apt-get install docker.io (or sudo containers/provision-docker.sh)"

hooks=(--hook-dir="$HOOKS/merged-usr")  # as debootstrap does; without it apt picks usrmerge and pulls in perl
if command -v eatmydata >/dev/null && [ -d "$HOOKS/eatmydata" ]; then
  hooks+=(--hook-dir="$HOOKS/eatmydata")
else
  say "eatmydata is not installed: dpkg will fsync every file (apt-get install eatmydata halves the time)"
fi

work=$(mktemp -d -p /var/tmp voip-testbed-base.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT

say "mmdebstrap --variant=minbase $SUITE from $MIRROR and $SUITE-security from $SECURITY_MIRROR"
t0=$SECONDS
set +e
mmdebstrap --variant=minbase --format=tar "${hooks[@]}" --include="$PACKAGES" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook='echo localhost >"$1/etc/hostname"' \
  --customize-hook=': >"$1/etc/resolv.conf"' \
  --customize-hook="dpkg-query --admindir=\"\$1/var/lib/dpkg\" -W -f='\${Version}' chromium >\"$work/chromium\"" \
  "$SUITE" "$work/rootfs.tar" "$MIRROR" "deb $SECURITY_MIRROR $SUITE-security main" 2>&1 \
  | tee "$work/mmdebstrap.log" \
  | { grep --line-buffered -E '^(I|E): ' | grep --line-buffered -vE "$QUIET" || true; }
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  tail -25 "$work/mmdebstrap.log" >&2
  echo "build-base: mmdebstrap failed (exit $rc); its last lines are above" >&2
  exit 4
fi
# a label, as security updates move the host's chromium on while this base keeps its own
chromium=$(cat "$work/chromium")
say "mmdebstrap took $((SECONDS - t0)) s (chromium $chromium)"

say "docker import -> $IMAGE"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.voip-testbed.base-recipe=$RECIPE org.voip-testbed.suite=$SUITE org.voip-testbed.chromium=$chromium org.opencontainers.image.title=voip-testbed-base" \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
say "$IMAGE built in $SECONDS s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
