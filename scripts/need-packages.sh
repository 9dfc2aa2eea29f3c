# Sourced by the scripts that need Debian packages: `need_packages PKG...` installs the missing
# ones when running as root, and otherwise names them and exits.
need_packages() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "missing packages: ${missing[*]} (install them, e.g. with sudo apt-get install)" >&2
    exit 1
  fi
}
