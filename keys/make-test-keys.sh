#!/usr/bin/env bash
# Makes the OpenPGP keys the ssync test suites use. TEST-ONLY: see keys/README.md.
#
#   keys/make-test-keys.sh OUTDIR
#
# Produces, in OUTDIR (created if missing):
#   gnupg/          a GnuPG home holding every test secret key (a symlink to a short directory
#                   under /tmp when OUTDIR is too deep for GnuPG's socket paths; the caller
#                   removes its target)
#   fingerprints    NAME=FPR lines, primary fingerprints, for plain, passphrase, expired,
#                   revoked, subkey, other
#   passphrase.txt  the passphrase of the "passphrase" key
#   NAME.pub.asc    the public part of each key alone (revoked.pub.asc carries the revocation)
#
# Every key is created as of 2020-01-01 (--faked-system-time), so tests can make signatures
# "in the past": the expired key was valid for one day from then; the revoked key is revoked
# as of now, only in revoked.pub.asc — its secret key in gnupg/ still signs.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)
# Frozen clocks ("!"): a ticking faked clock restarts at CREATED in every gpg process, so on a
# loaded machine the subkey's primary, made seconds "later" by an earlier process, would be
# "created in the future" and gpg would refuse to add the subkey ("Time conflict").
CREATED='20200101T000000!'
SUBKEY_ADDED='20200101T000100!'

# gpg-agent puts its sockets in the home when /run/user/UID/gnupg does not exist, and a socket
# path holds at most 107 bytes ("/S.gpg-agent.browser" is 20 of them).
if [[ ${#OUTDIR} -le 70 ]]; then
    GNUPGHOME=$OUTDIR/gnupg
    mkdir -p "$GNUPGHOME"
else
    GNUPGHOME=$(mktemp -d /tmp/ssync-keys-XXXXXX)
    rm -rf "$OUTDIR/gnupg"
    ln -s "$GNUPGHOME" "$OUTDIR/gnupg"
fi
export GNUPGHOME
chmod 700 "$GNUPGHOME"
SCRATCH=$(mktemp -d /tmp/ssync-rev-XXXXXX)
# gpg's chatter goes to a log, shown only when the script fails, so a failure says why.
LOG=$OUTDIR/make-test-keys.log
: >"$LOG"
cleanup() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        echo "$0: failed (exit $status); gpg said:" >&2
        cat "$LOG" >&2
    fi
    gpgconf --homedir "$GNUPGHOME" --kill all >/dev/null 2>&1 || true
    gpgconf --homedir "$SCRATCH" --kill all >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# Tests check that a wrong passphrase is refused: the agent must not answer from its cache.
printf 'default-cache-ttl 0\nmax-cache-ttl 0\ns2k-count 65536\n' >"$GNUPGHOME/gpg-agent.conf"
printf '' >"$GNUPGHOME/common.conf"
printf 'no-auto-key-retrieve\nno-auto-key-import\n' >"$GNUPGHOME/gpg.conf"
printf 'ssync test passphrase\n' >"$OUTDIR/passphrase.txt"

GPG=(gpg --batch --no-tty --quiet --no-auto-check-trustdb)

fpr_of() {  # EMAIL -> primary fingerprint
    "${GPG[@]}" --with-colons --list-keys "<$1>" | awk -F: '/^fpr:/ { print $10; exit }'
}

gen() {  # NAME USAGE EXPIRE [gpg options...]
    local name=$1 usage=$2 expire=$3
    shift 3
    "${GPG[@]}" --faked-system-time "$CREATED" "$@" \
        --quick-gen-key "ssync test key $name (TEST ONLY) <$name@test.invalid>" ed25519 "$usage" \
        "$expire" 2>>"$LOG"
}

gen plain sign never --passphrase ''
gen passphrase sign never --pinentry-mode loopback --passphrase-file "$OUTDIR/passphrase.txt"
gen expired sign 1d --passphrase ''
gen revoked sign never --passphrase ''
gen subkey cert never --passphrase ''
gen other sign never --passphrase ''

# The subkey key's primary can only certify; its signatures come from this subkey.
"${GPG[@]}" --faked-system-time "$SUBKEY_ADDED" --passphrase '' \
    --quick-add-key "$(fpr_of subkey@test.invalid)" ed25519 sign never 2>>"$LOG"

: >"$OUTDIR/fingerprints"
for name in plain passphrase expired revoked subkey other; do
    fpr=$(fpr_of "$name@test.invalid")
    echo "$name=$fpr" >>"$OUTDIR/fingerprints"
    "${GPG[@]}" --armor --export "$fpr" >"$OUTDIR/$name.pub.asc"
done

# Revoke the "revoked" key as of now, in a scratch home only. gpg refuses --gen-revoke in
# --batch mode, so its questions are answered through --command-fd: really revoke (y), reason
# 0 (none given), a description line, an empty line ending it, confirm (y).
revoked=$(fpr_of revoked@test.invalid)
printf 'y\n0\nssync test key revoked\n\ny\n' |
    gpg --no-tty --yes --command-fd 0 --pinentry-mode loopback --passphrase '' --armor \
        --output "$SCRATCH/revocation.asc" --gen-revoke "$revoked" >/dev/null 2>>"$LOG"
"${GPG[@]}" --homedir "$SCRATCH" --import "$OUTDIR/revoked.pub.asc" "$SCRATCH/revocation.asc" \
    2>>"$LOG"
"${GPG[@]}" --homedir "$SCRATCH" --armor --export "$revoked" >"$OUTDIR/revoked.pub.asc"
if ! "${GPG[@]}" --homedir "$SCRATCH" --with-colons --list-keys "$revoked" | grep -q '^pub:r:'; then
    echo "$0: the revocation of $revoked did not take" >&2
    exit 1
fi
