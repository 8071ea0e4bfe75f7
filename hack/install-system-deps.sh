#!/usr/bin/env bash
# Installs the Debian packages flotilla's tests and demo start for real; a no-op when present.
set -euo pipefail
# postgresql: the production-shaped Temporal server (devenv.temporal.TemporalServer) stores in it.
needed=(git openssl docker-registry openssh-client openssh-server postgresql)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "system: ${needed[*]} present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: missing ${missing[*]} and no apt-get here: install them with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "system: installing ${missing[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start a registry on :5000, sshd on :22 and PostgreSQL on :5432 through systemd
# where systemd runs; tests start their own.
command -v systemctl >/dev/null && $sudo systemctl disable --now docker-registry ssh postgresql 2>/dev/null || true
echo "system: installed ${missing[*]}"
