#!/usr/bin/env bash
# Fetch Debian *source* packages through a private apt configuration whose deb-src
# lines reuse the mirror URI already configured on this machine (read from /etc/apt).
# No host name is written anywhere in the repository.
#
# usage: fetch-debian-sources.sh CACHE_DIR SUITE PACKAGE[=VERSION] [...]
# Leaves the downloaded files (dsc, orig and debian tarballs) in CACHE_DIR/src/<suite>/
# and verifies every file against the SHA256 sums in the signed Sources index.
set -euo pipefail
cache=$1; suite=$2; shift 2
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  uri=$(awk '/^URIs:/{print $2; exit}' "$f")
  case "$uri" in */debian) mirror=$uri; break;; esac
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "fetch-debian-sources: no Debian mirror found in /etc/apt; configure one first" >&2; exit 1; }

root="$cache/apt-$suite"
mkdir -p "$root/lists/partial" "$root/archives/partial" "$cache/src/$suite"
cat > "$root/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
SRC
opts=(-o "Dir::Etc::SourceList=$root/sources.list" -o "Dir::Etc::SourceParts=-"
      -o "Dir::State::Lists=$root/lists" -o "Dir::Cache=$root" -o "APT::Get::Only-Source=true"
      -o "Acquire::Languages=none")
# refresh the index at most once a day
if [ -z "$(find "$root/lists" -maxdepth 1 -name '*Sources*' -mtime -1 2>/dev/null)" ]; then
  apt-get "${opts[@]}" update -q >&2
fi
cd "$cache/src/$suite"
for pkg in "$@"; do
  # apt-get source verifies the downloaded files against the hashes of the signed index
  apt-get "${opts[@]}" source --download-only -q "$pkg" >&2
done
# second, explicit check: every file named in each .dsc matches its SHA256
for dsc in *.dsc; do
  awk '/^Checksums-Sha256:/{f=1;next} /^[^ ]/{f=0} f && NF==3 {print $1"  "$3}' "$dsc" | sha256sum -c --quiet -
done
echo "$cache/src/$suite"
