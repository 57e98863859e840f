#!/usr/bin/env bash
# System packages the test suite needs (Debian): installed when missing and we may install.
# Each line: a command that must exist, and the Debian packages that provide it.
set -euo pipefail
need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("${@:2}"); }
check chromium chromium              # (browser tests)
check curl curl                      # (the HTTP API as the README shows it)
check node nodejs                    # (the canvas's zoom and pan script, tests/test_canvas_view.py)
# (storage tests on PostgreSQL) Debian keeps pg_ctl off PATH, in /usr/lib/postgresql/N/bin
command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "missing system packages: ${need[*]} (install them with apt-get)" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
