#!/usr/bin/env bash
# Make a Docker engine available on this (Debian/Ubuntu) host for the Docker backend and its tests.
# Idempotent: installs Debian's docker.io (and mmdebstrap + eatmydata, which build the base image without a
# registry) only when missing, starts the engine only when `docker info` fails, waits up to 60 s.
# Prints one line per thing it did, nothing when there was nothing to do. Exit 0: an engine answers; exit 3: it cannot get one (the message
# says why and how).
#
# The engine this script starts itself runs with `--bridge=none --iptables=false`: lab containers have
# `network_mode=none` (their links are veths wired from the host) and image builds use no network or
# the host's, so the engine has no reason to add docker0, NAT rules or a FORWARD DROP policy to the
# host's root namespace. An engine that is already running (a user's own) is used as it is.
set -uo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_S=${DOCKERD_WAIT_S:-60}
DEBS=(docker.io mmdebstrap eatmydata)

die() { echo "provision-docker: $*" >&2; exit 3; }
say() { echo "provision-docker: $*"; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed'; }

# 1. packages
missing=()
for p in "${DEBS[@]}"; do installed "$p" || missing+=("$p"); done
# a docker CLI alone (e.g. a static client in /usr/local/bin) is not an engine: dockerd decides
if [ ${#missing[@]} -gt 0 ]; then
  if engine_up && [ "${missing[*]}" = "docker.io" ]; then
    missing=()  # an engine from elsewhere (docker-ce, ...) already answers: do not install a conflicting one
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "Debian packages missing: ${missing[*]}; run as root (sudo), or install them: apt-get install ${missing[*]}"
  command -v apt-get >/dev/null || die "no apt-get here; install a Docker engine, mmdebstrap and eatmydata with this system's package manager"
  say "installing Debian packages: ${missing[*]}"
  t0=$SECONDS
  apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed; trying the install with the package lists there are"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/provision-docker-apt.log 2>&1; then
    tail -5 /tmp/provision-docker-apt.log >&2
    die "apt-get install ${missing[*]} failed (log: /tmp/provision-docker-apt.log)"
  fi
  say "installed ${missing[*]} in $((SECONDS - t0)) s"
fi

# 2. engine
if engine_up; then
  exit 0  # quiet when there is nothing to do
fi
if [ "$(id -u)" -ne 0 ]; then
  if [[ "$(timeout 10 docker info 2>&1)" == *"permission denied"* ]]; then
    die "a Docker engine runs but this user may not use it; run as root (sudo), or join the docker group"
  fi
  die "no Docker engine answers and starting one needs root; run as root (sudo), or start it: systemctl start docker"
fi
command -v dockerd >/dev/null || die "dockerd not found although docker.io is installed; reinstall it: apt-get install --reinstall docker.io"

t0=$SECONDS
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  say "starting the Docker engine: systemctl start docker"
  systemctl start docker || say "systemctl start docker failed; starting dockerd directly"
fi
if ! engine_up && ! pgrep -x dockerd >/dev/null; then
  say "starting the Docker engine: dockerd --bridge=none --iptables=false (log: $LOG)"
  # setsid: the engine outlives this script and the make/CI process group that ran it
  setsid dockerd --bridge=none --iptables=false --ip6tables=false >>"$LOG" 2>&1 </dev/null &
fi
for _ in $(seq 1 $((WAIT_S * 2))); do
  engine_up && break
  sleep 0.5
done
if ! engine_up; then
  tail -15 "$LOG" >&2 2>/dev/null
  die "the Docker engine did not answer within ${WAIT_S} s (log: $LOG); see the lines above"
fi
say "Docker engine up after $((SECONDS - t0)) s ($(docker info --format '{{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null))"
