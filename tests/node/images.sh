#!/usr/bin/env bash
# Builds the container images the test node runs, without Docker and without a registry,
# into  ${REDISQUEUE_IMAGE_CACHE:-<repo>/.cache/images}/<name>-<key>.tar  (docker-archive
# tarballs that `ctr images import` loads), and prints one line per image:
#   <name> <image reference> <tarball>
#
#   pause     the sandbox image: the static pause binary from build.sh
#   redis     Debian's redis-server and redis-tools (mmdebstrap, minbase)
#   python    Debian's Python 3.11 with pip: the local stand-in for python:3.11-slim
#   operator  operator/Dockerfile built by buildah with --pull=never on that base
#
# <key> hashes every input (this script, the apt sources, the package list, the files the
# Dockerfile copies), so a change rebuilds exactly the images it affects. Packages come
# from the apt sources this machine already uses; the operator's Python dependencies from
# the package index pip is configured for, at the versions of operator/constraints.txt. Nothing is pulled from an image registry.
#
#   tests/node/images.sh PAUSE_BINARY
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
pause_binary="${1:?usage: images.sh PAUSE_BINARY}"
cache="${REDISQUEUE_IMAGE_CACHE:-$repo_root/.cache/images}"
mkdir -p "$cache"
log() { echo "images.sh: $*" >&2; }
for tool in mmdebstrap umoci skopeo buildah; do
  command -v "$tool" >/dev/null || {
    log "$tool is missing: apt-get install -y mmdebstrap umoci skopeo buildah"; exit 1; }
done

exec 9>"$cache/.lock"
flock 9

# The machine's own apt sources (deb822 .sources files, or sources.list), never a fixed host.
sources=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
  [ -s "$f" ] && sources+=("$f")
done
[ "${#sources[@]}" -gt 0 ] || { log "no apt sources found in /etc/apt"; exit 1; }
suite="$(awk '/^Suites:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
[ -n "$suite" ] || suite="$(awk '$1 == "deb" { print $3; exit }' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$suite" ] || { log "cannot tell the Debian suite from the apt sources"; exit 1; }
sources_hash="$(cat "${sources[@]}" | sha256sum | cut -c1-12)"
script_hash="$(sha256sum < "$here/images.sh" | cut -c1-12)"

# skopeo and buildah write outside their --root even with --network=host: a blob-info
# cache, their network backends' lock files and run dir. Of each such path that is missing
# now, the highest missing ancestor (/etc/cni on a host without it) is removed afterwards;
# what existed stays. Their scratch files go to the work dir (TMPDIR).
created=()
for path in /var/lib/containers/cache /etc/cni/net.d /etc/containers/networks \
  /run/containers/networks; do
  top=""
  while [ ! -e "$path" ] && [ ! -L "$path" ]; do top="$path"; path="$(dirname "$path")"; done
  [ -z "$top" ] || created+=("$top")
done
work="$(mktemp -d "$cache/.work.XXXXXX")"
cleanup() {
  rm -rf "$work"
  [ "${#created[@]}" = 0 ] || rm -rf "${created[@]}"
}
trap cleanup EXIT
mkdir "$work/tmp"
export TMPDIR="$work/tmp"

# rootfs tarball + image config -> docker-archive tarball named $ref, via an OCI layout.
oci_from_rootfs() {
  local rootfs_tar="$1" ref="$2" out="$3"; shift 3
  local layout="$work/oci-$$-$RANDOM" bundle="$work/bundle-$$-$RANDOM"
  umoci init --layout "$layout"
  umoci new --image "$layout:img"
  umoci unpack --image "$layout:img" "$bundle" >/dev/null
  tar -C "$bundle/rootfs" -xf "$rootfs_tar"
  umoci repack --image "$layout:img" "$bundle" >/dev/null
  umoci config --image "$layout:img" "$@"
  rm -rf "$bundle"
  skopeo copy --quiet "oci:$layout:img" "docker-archive:$out.tmp:$ref"
  mv "$out.tmp" "$out"
}

debian_rootfs() {
  local packages="$1" out="$2"
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$suite" "$out" "${sources[@]}"
}

# --- pause
pause_key="$( (sha256sum < "$pause_binary"; echo "$script_hash") | sha256sum | cut -c1-12)"
pause_ref="localhost/redisqueue-test/pause:$pause_key"
pause_tar="$cache/pause-$pause_key.tar"
if [ ! -s "$pause_tar" ]; then
  log "building the pause image"
  mkdir -p "$work/pause"
  install -m 0755 "$pause_binary" "$work/pause/pause"
  tar -C "$work/pause" -cf "$work/pause.tar" pause
  oci_from_rootfs "$work/pause.tar" "$pause_ref" "$pause_tar" \
    --config.entrypoint /pause --config.user 65535:65535
fi
echo "pause $pause_ref $pause_tar"

# --- redis
redis_packages="redis-server,redis-tools"
redis_key="$(echo "$script_hash $sources_hash $suite $redis_packages" | sha256sum | cut -c1-12)"
redis_ref="localhost/redisqueue-test/redis:$redis_key"
redis_tar="$cache/redis-$redis_key.tar"
if [ ! -s "$redis_tar" ]; then
  log "building the Redis image from Debian $suite packages ($redis_packages)"
  debian_rootfs "$redis_packages" "$work/redis-rootfs.tar"
  oci_from_rootfs "$work/redis-rootfs.tar" "$redis_ref" "$redis_tar" \
    --config.cmd redis-server --config.workingdir /data --config.user 999:999 \
    --config.exposedports 6379/tcp
fi
echo "redis $redis_ref $redis_tar"

# --- python base: what operator/Dockerfile's FROM names. Debian's Python is "externally
# managed" (PEP 668); the official python images are not, and the Dockerfile pip-installs
# into the system Python as it may there, so the marker goes.
python_packages="python3,python3-pip,python3-venv,passwd,ca-certificates"
python_key="$(echo "$script_hash $sources_hash $suite $python_packages" | sha256sum | cut -c1-12)"
python_ref="docker.io/library/python:3.11-slim"
python_tar="$cache/python-$python_key.tar"
if [ ! -s "$python_tar" ]; then
  log "building the Python base image from Debian $suite packages ($python_packages)"
  debian_rootfs "$python_packages" "$work/python-rootfs.tar"
  mkdir -p "$work/py" && tar -C "$work/py" -xf "$work/python-rootfs.tar"
  rm -f "$work"/py/usr/lib/python3*/EXTERNALLY-MANAGED
  tar -C "$work/py" -cf "$work/python-rootfs2.tar" . && rm -rf "$work/py"
  oci_from_rootfs "$work/python-rootfs2.tar" "$python_ref" "$python_tar" \
    --config.cmd python3 --config.env LANG=C.UTF-8
fi
echo "python $python_ref $python_tar"

# --- operator: operator/Dockerfile, unchanged, with buildah in a private store.
# Uncommitted edits count too: hash the working tree's content, not the index.
operator_inputs="$(cd "$repo_root" && { echo "$python_key $script_hash"; \
  find operator/Dockerfile pyproject.toml README.md LICENSE operator/constraints.txt \
    operator/redisqueue -type f \
    ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)"
operator_ref="localhost/redisqueue-operator:$operator_inputs"
operator_tar="$cache/operator-$operator_inputs.tar"
if [ ! -s "$operator_tar" ]; then
  log "building the operator image from operator/Dockerfile (buildah, --pull=never)"
  store="$work/buildah"
  bah=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
  "${bah[@]}" pull --quiet "docker-archive:$python_tar" >/dev/null
  # The host's CA bundle: package downloads may pass a TLS-inspecting proxy.
  ca=/etc/ssl/certs/ca-certificates.crt
  (cd "$repo_root" && "${bah[@]}" bud --quiet --pull=never --isolation=chroot --network=host \
    --layers=false -v "$ca:$ca:ro" -f operator/Dockerfile -t "$operator_ref" .) >&2
  "${bah[@]}" push --quiet "$operator_ref" "docker-archive:$operator_tar.tmp:$operator_ref"
  mv "$operator_tar.tmp" "$operator_tar"
  "${bah[@]}" rm --all >/dev/null 2>&1 || true
  "${bah[@]}" rmi --all --force >/dev/null 2>&1 || true
fi
echo "operator $operator_ref $operator_tar"
