#!/usr/bin/env bash
# The main job on a bundled example: make a throwaway signing key, sign the sample tree in
# examples/site, sync a mirror from the publication, and audit the mirror. Everything happens
# in a temporary directory that is removed at the end (pass --keep to keep it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SSYNC_BIN:-$here/../build}
keep=${1:-}
work=$(mktemp -d /tmp/ssync-example-XXXXXX)
export GNUPGHOME=$work/gnupg
cleanup() {
    gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true
    if [[ $keep == --keep ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"

echo "== a throwaway release key (never use such a key for real: see keys/README.md)"
gpg --batch --quiet --passphrase '' --quick-gen-key 'ssync example release key <example@invalid>' ed25519 sign 1d
fpr=$(gpg --list-keys --with-colons | awk -F: '/^fpr/ {print $10; exit}')
gpg --armor --export "$fpr" >"$work/release-key.asc"
echo "key $fpr"

echo "== sign examples/site into a publication"
cp -a "$here/site" "$work/site"
"$bin/ssync-signer" sign --root "$work/site" --out "$work/pub" --key "$fpr" --name example-site
gpg --verify "$work/pub/manifest.json.asc" "$work/pub/manifest.json" 2>&1 | grep 'Good signature'

echo "== sync a mirror from it (only the public key is trusted)"
"$bin/ssync-verifier" sync --from "$work/pub" --to "$work/mirror" --keyring "$work/release-key.asc" \
    --state "$work/state" --json

echo "== audit the mirror"
"$bin/ssync-verifier" audit --from "$work/pub" --keyring "$work/release-key.asc" "$work/mirror"

echo "== the master changes a file and re-signs; the mirror follows"
echo "<p>updated</p>" >>"$work/site/index.html"
"$bin/ssync-signer" sign --root "$work/site" --out "$work/pub" --key "$fpr"
"$bin/ssync-verifier" sync --from "$work/pub" --to "$work/mirror" --keyring "$work/release-key.asc" \
    --state "$work/state" --json
"$bin/ssync-verifier" audit --from "$work/mirror" --keyring "$work/release-key.asc" "$work/mirror"

echo "== the master drops the old release and the content only it used"
"$bin/ssync-signer" gc --out "$work/pub" --keep 1
# gc, like sign, prints its summary only at a terminal; what is left shows either way.
echo "releases kept: $(ls "$work/pub/releases")"

echo "== a tampered mirror is caught"
echo "defaced" >"$work/mirror/index.html"
if "$bin/ssync-verifier" audit --from "$work/pub" --keyring "$work/release-key.asc" "$work/mirror"; then
    echo "audit should have failed" >&2
    exit 1
fi
echo "== done: the example signed, synced and audited a mirror"
