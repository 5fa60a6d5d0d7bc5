#!/usr/bin/env bash
# Fetch Debian *source* packages through a private apt configuration whose deb-src
# lines reuse the mirror URI already configured on this machine (read from /etc/apt).
# No host name is written anywhere in the repository.
#
# usage: fetch-debian-sources.sh [--orig-only] CACHE_DIR SUITE PACKAGE[=VERSION] [...]
# Leaves the downloaded files (dsc, orig and debian tarballs) in CACHE_DIR/src/<suite>/
# and verifies every file against the SHA256 sums in the signed Sources index.
#
# --orig-only: download only the upstream tarball(s) (*.orig.tar.*) named in the Sources index,
#   without apt-get source. For suites newer than this machine's apt (e.g. trixie from bookworm),
#   whose .dsc files apt-get source cannot parse. The file name, size and SHA256 come from the
#   Sources index that apt-get update verified against the signed InRelease; apt-helper checks
#   the download against that SHA256.
set -euo pipefail
orig_only=0
if [ "${1:-}" = "--orig-only" ]; then orig_only=1; shift; fi
[ $# -ge 3 ] || { echo "usage: $0 [--orig-only] CACHE_DIR SUITE PACKAGE[=VERSION] [...]" >&2; exit 2; }
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
if [ $orig_only -eq 1 ]; then
  index=$(find "$root/lists" -maxdepth 1 -name "*_dists_${suite}_main_source_Sources*" | head -n1)
  [ -n "$index" ] || { echo "fetch-debian-sources: no Sources index for $suite in $root/lists" >&2; exit 1; }
  for pkg in "$@"; do
    name=${pkg%%=*}; want=""
    [ "$name" = "$pkg" ] || want=${pkg#*=}
    # stanza of NAME (at VERSION if given): "Directory", then "sha256 size file" of each orig tarball
    # (awk reads to the end: leaving early would kill apt-helper with SIGPIPE)
    found=$(/usr/lib/apt/apt-helper cat-file "$index" | awk -v name="$name" -v want="$want" '
      done { next }
      /^$/ { if (hit) { done=1; next }; pkg=""; ver=""; dir=""; n=0; next }
      /^Package:/ { pkg=$2 }
      /^Version:/ { ver=$2 }
      /^Directory:/ { dir=$2 }
      /^[^ ]/ { sha = ($1 == "Checksums-Sha256:") }
      sha && /^ / && $3 ~ /\.orig(-[A-Za-z0-9-]+)?\.tar\./ { files[++n] = $1 " " $2 " " $3 }
      pkg == name && (want == "" || ver == want) && dir != "" && n > 0 && !hit { hit=1 }
      END { if (hit) { print dir; for (k = 1; k <= n; k++) print files[k] } }')
    [ -n "$found" ] || { echo "fetch-debian-sources: $pkg not in the $suite Sources index" >&2; exit 1; }
    dir=$(echo "$found" | head -n1)
    echo "$found" | tail -n +2 | while read -r sha size file; do
      if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --quiet - 2>/dev/null; then continue; fi
      echo "fetch-debian-sources: downloading $file ($size bytes) from $suite" >&2
      rm -f "$file.part"
      /usr/lib/apt/apt-helper download-file "$mirror/$dir/$file" "$file.part" "SHA256:$sha" >&2
      echo "$sha  $file.part" | sha256sum -c --quiet - || { echo "fetch-debian-sources: $file: SHA256 mismatch" >&2; exit 1; }
      mv "$file.part" "$file"
    done
  done
  echo "$cache/src/$suite"
  exit 0
fi
for pkg in "$@"; do
  # apt-get source verifies the downloaded files against the hashes of the signed index
  apt-get "${opts[@]}" source --download-only -q "$pkg" >&2
done
# second, explicit check: every file named in each .dsc matches its SHA256
for dsc in *.dsc; do
  awk '/^Checksums-Sha256:/{f=1;next} /^[^ ]/{f=0} f && NF==3 {print $1"  "$3}' "$dsc" | sha256sum -c --quiet -
done
echo "$cache/src/$suite"
