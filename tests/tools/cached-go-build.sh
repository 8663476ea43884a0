# Sourced by the Go tool builds (tests/controlplane/build.sh, tests/tools/prometheus/build.sh).
#
#   cached_build_begin WHAT DEST BINARY...   # returns only when a build is needed
#   ... go build ... -o "$scratch/" ...
#   cached_build_finish                      # moves the binaries into place, prints bin/
#
# DEST/bin/ holding every BINARY means done: print it and exit at once, without go.
# Otherwise take DEST/.build.lock (concurrent runs wait, then find the finished cache),
# build into a scratch folder, and move it into place only when every binary is there,
# so an interrupted build never leaves a half cache.

log() { echo "build.sh: $*" >&2; }

_cached_complete() {
  local b
  for b in "${cached_binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

cached_build_begin() {
  cached_what="$1" dest="$2"
  shift 2
  cached_binaries=("$@")
  bin="$dest/bin"
  if _cached_complete; then echo "$bin"; exit 0; fi
  command -v go >/dev/null || { log "the go command is needed to build $cached_what"; exit 1; }
  mkdir -p "$dest"
  exec 9>"$dest/.build.lock"
  flock 9
  if _cached_complete; then echo "$bin"; exit 0; fi  # another run finished it meanwhile
  scratch="$(mktemp -d "$dest/.bin.XXXXXX")"
  trap 'rm -rf "$scratch"' EXIT
  # Static binaries, like the release builds; no C toolchain needed.
  export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
  cached_started=$SECONDS
}

cached_build_finish() {
  local b
  for b in "${cached_binaries[@]}"; do
    [ -x "$scratch/$b" ] || { log "missing $b after build"; exit 1; }
  done
  chmod 755 "$scratch"
  rm -rf "$bin"
  mv "$scratch" "$bin"
  trap - EXIT
  log "built $cached_what in $((SECONDS - cached_started)) s; $(du -sh "$dest" | cut -f1) in $dest"
  echo "$bin"
}
