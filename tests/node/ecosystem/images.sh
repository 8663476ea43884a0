#!/usr/bin/env bash
# Container images of one ecosystem component, from the static binaries build.sh makes (and,
# for Prometheus, the server tests/tools/prometheus builds): no registry, nothing pulled.
# Builds (or finds) docker-archive tarballs that `ctr images import` loads, in
#   ${REDISQUEUE_IMAGE_CACHE:-<repo>/.cache/images}/<name>-<key>.tar
# and prints one line per image:  <name> <image reference> <tarball>
#
#   images.sh prometheus-operator   prometheus-operator, prometheus-config-reloader, prometheus
#   images.sh keda                  keda (operator), keda-adapter (metrics API server)
#
# Each image is the one binary on an empty filesystem (plus /tmp), run as nobody; <key>
# hashes the binary and this script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"
component="${1:?usage: images.sh prometheus-operator|keda}"
cache="${REDISQUEUE_IMAGE_CACHE:-$repo_root/.cache/images}"
mkdir -p "$cache"
log() { echo "images.sh: $*" >&2; }
for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || { log "$tool is missing: apt-get install -y umoci skopeo"; exit 1; }
done

bin="$("$here/build.sh" "$component")"
# The Prometheus server that prometheus-operator runs is the one the other tests use.
if [ "$component" = prometheus-operator ]; then
  prometheus_bin="$("$repo_root/tests/tools/prometheus/build.sh")"
fi
script_hash="$(sha256sum < "$here/images.sh" | cut -c1-12)"

# The same lock as ../images.sh: both use and clean up /var/lib/containers.
exec 9>"$cache/.lock"
flock 9
containers_existed=0; [ -e /var/lib/containers ] && containers_existed=1
work="$(mktemp -d "$cache/.work.XXXXXX")"
cleanup() {
  rm -rf "$work"
  [ "$containers_existed" = 1 ] || rm -rf /var/lib/containers
}
trap cleanup EXIT

# image NAME BINARY PATH_IN_IMAGE [umoci config flags...]
image() {
  local name="$1" binary="$2" path="$3"; shift 3
  local key ref out layout bundle
  key="$( (sha256sum < "$binary"; echo "$script_hash") | sha256sum | cut -c1-12)"
  ref="localhost/redisqueue-test/$name:$key"
  out="$cache/$name-$key.tar"
  if [ ! -s "$out" ]; then
    log "building the $name image"
    layout="$work/oci-$name" bundle="$work/bundle-$name"
    umoci init --layout "$layout"
    umoci new --image "$layout:img"
    umoci unpack --image "$layout:img" "$bundle" >/dev/null
    install -D -m 0755 "$binary" "$bundle/rootfs$path"
    install -d -m 1777 "$bundle/rootfs/tmp"
    umoci repack --image "$layout:img" "$bundle" >/dev/null
    umoci config --image "$layout:img" --config.entrypoint "$path" --config.user 65534:65534 "$@"
    skopeo copy --quiet "oci:$layout:img" "docker-archive:$out.tmp:$ref"
    mv "$out.tmp" "$out"
    rm -rf "$layout" "$bundle"
  fi
  echo "$name $ref $out"
}

case "$component" in
  prometheus-operator)
    image prometheus-operator "$bin/operator" /bin/operator
    image prometheus-config-reloader "$bin/prometheus-config-reloader" /bin/prometheus-config-reloader
    image prometheus "$prometheus_bin/prometheus" /bin/prometheus --config.workingdir /prometheus ;;
  keda)
    image keda "$bin/keda" /keda
    image keda-adapter "$bin/keda-adapter" /keda-adapter ;;
  *) log "unknown component '$component': prometheus-operator or keda"; exit 2 ;;
esac
