#!/usr/bin/env bash
# DynamoDB Local needs Java 17 or newer; install Debian's when it is missing.
set -euo pipefail
major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'; }
if command -v java >/dev/null 2>&1 && [ "$(major)" -ge 17 ]; then
  exit 0
fi
echo "Installing Java 17 (openjdk-17-jre-headless) for DynamoDB Local..." >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
java -version
