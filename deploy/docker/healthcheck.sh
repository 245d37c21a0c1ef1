#!/bin/bash
# sluice-healthcheck: exit 0 when the Sluice process in this container answers
# GET /healthz with 200, 1 otherwise.
#
# The runtime image carries no curl or wget; bash's /dev/tcp is enough for one
# HTTP/1.1 request to a local port.
#
# Usage: sluice-healthcheck [HOST:PORT] [PATH]
# Without HOST:PORT the address comes from the container's main process
# (PID 1): its --http-listen (control plane), --admin-listen (data plane) or
# --listen (mock provider) flag, else the matching SLUICE_* variable, else the
# image default.
set -u

addr="${1:-}"
# The main process's command line (overridable for tests).
cmdline="${SLUICE_HEALTHCHECK_CMDLINE:-/proc/1/cmdline}"
path="${2:-/healthz}"

# flag_value NAME: print the value of --NAME in PID 1's command line. A
# program that splits HOST:PORT in place leaves "HOST" and "PORT" as two
# arguments in /proc/1/cmdline; they are joined again.
flag_value() {
  local want="--$1" prev="" arg val="" found=0
  [ -r "$cmdline" ] || return 1
  while IFS= read -r -d '' arg; do
    if [ "$found" = 1 ]; then
      case "$arg" in
        "" | *[!0-9]*) ;;
        *) val="$val:$arg" ;;
      esac
      break
    fi
    if [ "$prev" = "$want" ]; then
      val="$arg"
    else
      case "$arg" in
        "$want="*) val="${arg#*=}" ;;
        *) prev="$arg"; continue ;;
      esac
    fi
    case "$val" in *:*) break ;; esac
    found=1
  done <"$cmdline"
  [ -n "$val" ] || return 1
  printf '%s' "$val"
}

if [ -z "$addr" ]; then
  role=""
  if [ -r "$cmdline" ]; then
    role="$(tr '\0' '\n' <"$cmdline" | head -n 1)"
    role="${role##*/}"
    # "sluice-controlplane migrate" is a one-shot job: nothing to probe.
    if [ "$role" = "sluice-controlplane" ] && tr '\0' '\n' <"$cmdline" | grep -qx migrate; then
      exit 0
    fi
  fi
  case "$role" in
    sluice-controlplane)
      addr="$(flag_value http-listen || printf '%s' "${SLUICE_HTTP_LISTEN:-0.0.0.0:7071}")" ;;
    sluice-mockllm)
      addr="$(flag_value listen || printf '%s' "${SLUICE_MOCKLLM_LISTEN:-0.0.0.0:8000}")" ;;
    sluicectl)
      exit 0 ;;
    *)
      addr="$(flag_value admin-listen || printf '%s' "${SLUICE_ADMIN_LISTEN:-0.0.0.0:9090}")" ;;
  esac
fi

port="${addr##*:}"
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
  "" | 0.0.0.0 | "*") host=127.0.0.1 ;;
  ::) host=::1 ;;
esac
case "$port" in
  "" | *[!0-9]*) echo "sluice-healthcheck: bad address \"$addr\"" >&2; exit 1 ;;
esac

# Timeout guards against a process that accepts but never answers.
exec timeout 3 bash -c '
  exec 3<>"/dev/tcp/$0/$1" || exit 1
  printf "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$2" >&3
  IFS= read -r status <&3 || exit 1
  case "$status" in
    "HTTP/1."[01]" 200"*) exit 0 ;;
    *) echo "sluice-healthcheck: $0:$1$2: ${status%$'"'"'\r'"'"'}" >&2; exit 1 ;;
  esac
' "$host" "$port" "$path"
