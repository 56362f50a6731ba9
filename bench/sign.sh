#!/usr/bin/env bash
# Signing benchmark: ssync-signer against sha256sum, openssl and cp -a on one ~1 GiB tree.
# Usage: bash bench/sign.sh [BUILD_DIR]   (default ./build-bench; builds nothing itself)
# See bench/README.md for what each row measures and the targets.
set -euo pipefail

BIN=${1:-./build-bench}
SIGNER=$BIN/ssync-signer
if [[ ! -x $SIGNER ]]; then
    echo "sign.sh: no $SIGNER; build it first:" >&2
    echo "  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release" \
         "&& cmake --build build-bench -j2 --target ssync-signer" >&2
    exit 2
fi
SIGNER=$(realpath "$SIGNER")
for tool in /usr/bin/time python3 gpg openssl sha256sum; do
    command -v "$tool" >/dev/null || { echo "sign.sh: $tool is missing" >&2; exit 2; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$HERE/work          # git-ignored
TREE=$WORK/tree
PUB=$WORK/pub
COPY=$WORK/copy
NPROC=$(nproc)
mkdir -p "$WORK"
LOG=$(mktemp "$WORK/log.XXXXXX")

# The tree is cached; it is made again only when make-tree.py changes.
stamp=$(sha256sum "$HERE/make-tree.py" | cut -c1-16)
if [[ ! -d $TREE || "$(cat "$WORK/tree.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$TREE" "$WORK/tree.stamp"
    echo "making the tree (once; cached in $TREE)..."
    python3 "$HERE/make-tree.py" "$TREE"
    echo "$stamp" >"$WORK/tree.stamp"
fi

# A throwaway key in a temporary GNUPGHOME: ed25519, no passphrase.
GNUPGHOME=$(mktemp -d /tmp/ssync-bench-gpg.XXXXXX)
export GNUPGHOME
cleanup() {
    gpgconf --kill all 2>/dev/null || true
    rm -rf "$GNUPGHOME" "$PUB" "$COPY" "$LOG"
}
trap cleanup EXIT
gpg --batch --quiet --passphrase '' \
    --quick-gen-key 'ssync benchmark, throwaway <bench@example.invalid>' ed25519 sign never 2>>"$LOG"
FPR=$(gpg --list-secret-keys --with-colons 2>>"$LOG" | awk -F: '/^fpr/ {print $10; exit}')

BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
NFILES=$(find "$TREE" -type f | wc -l)
echo "tree: $NFILES files, $((BYTES / 1000000)) MB; $NPROC cores; signer $SIGNER"

# Warm the page cache: every benchmark below reads the tree from memory.
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null

sign() {   # sign [--rehash]: one signer run on the bench publication; JSON summary in last.json
    "$SIGNER" sign --root "$TREE" --out "$PUB" --key "$FPR" --gnupghome "$GNUPGHOME" \
        --name bench --json "$@" >"$WORK/last.json"
}
pipeline() {   # pipeline DIR HASHER...: every file under DIR through HASHER on all cores
    local dir=$1; shift
    find "$dir" -type f -print0 | xargs -0 -P"$NPROC" "$@" >/dev/null
}
copy_and_hash() {
    cp -a "$TREE" "$COPY" && pipeline "$COPY" sha256sum
}
export SIGNER TREE PUB COPY FPR NPROC WORK
export -f sign pipeline copy_and_hash
json_field() {   # json_field NAME: a field of the last signer run's --json summary
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/last.json" "$1"
}

# measure NAME SETUP CMD...: runs SETUP and sync (untimed; the sync keeps one run's writeback
# out of the next; "nosync" as SETUP skips both), then CMD under /usr/bin/time. Appends the
# wall time in seconds and the peak RSS in KiB to the arrays WALL_<NAME> and RSS_<NAME>.
measure() {
    local name=$1 setup=$2; shift 2
    if [[ $setup != nosync ]]; then eval "$setup"; sync; fi
    local t0 t1 tf
    tf=$(mktemp "$WORK/time.XXXXXX")
    t0=$EPOCHREALTIME
    # Through bash -c, since the commands are shell functions; the same small cost for all.
    if ! /usr/bin/time -f '%M' -o "$tf" bash -c '"$@"' _ "$@" 2>>"$LOG"; then
        echo "sign.sh: failed: $*" >&2; cat "$LOG" >&2; exit 1
    fi
    t1=$EPOCHREALTIME
    eval "WALL_$name+=($(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'))"
    eval "RSS_$name+=($(tail -1 "$tf"))"
    rm -f "$tf"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
declare -a WALL_first RSS_first WALL_cp RSS_cp WALL_sync RSS_sync WALL_rehash RSS_rehash \
           WALL_sha RSS_sha WALL_ossl RSS_ossl WALL_resign RSS_resign WALL_walk RSS_walk \
           WALL_gpgsign RSS_gpgsign

# Noise gauge: CPU time used by anything but this script and its children, from /proc/stat
# (kernel threads included: measure only where this script does not write much).
cpu_sample() {
    read -r _ u n sy idle io irq sirq steal _ </proc/stat
    BUSY=$((u + n + sy + irq + sirq + steal)); TOTAL=$((BUSY + idle + io))
    local f; f=$(sed 's/.*) //' /proc/$$/stat)
    OURS=$(awk '{print $12 + $13 + $14 + $15}' <<<"$f")   # utime stime cutime cstime
}
echo "running..."
# 1. First sign into an empty publication (hash, store every object, syncfs, sign) against
#    copying the tree and hashing the copy (no fsync: cp -a leaves the data in the cache), in
#    alternating rounds so that load from other processes hits both alike. The sync after the
#    copy is timed separately, for information: the signer's syncfs is part of its time, since a
#    manifest must never point at content that is not on disk. Three rounds, or one when a
#    round takes over 15 s.
round_pair() {
    measure first 'rm -rf "$PUB"' sign
    [[ $(json_field objects_stored) == "$NFILES" ]] ||
        echo "warning: first sign stored $(json_field objects_stored) of $NFILES objects (duplicate content?)"
    measure cp 'rm -rf "$COPY"' copy_and_hash
    measure sync nosync sync
}
round_pair
rounds=$(awk -v a="${WALL_first[0]}" -v b="${WALL_cp[0]}" 'BEGIN {print (a + b < 15 ? 3 : 1)}')
for ((i = 1; i < rounds; i++)); do round_pair; done
rm -rf "$COPY"

# From here on nothing writes much, so kernel writeback (which /proc/stat cannot tell from
# other processes) does not disturb the noise gauge.
cpu_sample; BUSY0=$BUSY; TOTAL0=$TOTAL; OURS0=$OURS
# 2. --rehash with every object already present, interleaved with the two hashing pipelines so
#    that load from other processes hits all three alike.
for round in 1 2 3; do
    measure rehash ':' sign --rehash
    [[ $(json_field files_hashed) == "$NFILES" ]] ||
        { echo "sign.sh: --rehash did not hash every file" >&2; exit 1; }
    measure sha ':' pipeline "$TREE" sha256sum
    measure ossl ':' pipeline "$TREE" openssl dgst -sha256
done

# 3. Re-signing the unchanged tree: every digest from the stat cache. Beside it, for
#    information, the two things no re-sign can skip, done by stock tools: a stat of every entry
#    of the tree (find, one thread) and a detached signature of the manifest (gpg). Their sum is
#    what this machine needs at least, whatever the signer does.
stat_walk() { find "$TREE" -printf '%s %T@ %C@ %i %m %U %G %l\n' >/dev/null; }
gpg_sign() { gpg --batch --yes -u "$FPR" --detach-sign --armor -o "$WORK/floor.asc" "$PUB/manifest.json"; }
export -f stat_walk gpg_sign
for round in 1 2 3; do
    measure resign ':' sign
    [[ $(json_field files_cached) == "$NFILES" ]] ||
        { echo "sign.sh: re-sign hashed $(json_field files_hashed) files" >&2; exit 1; }
    measure walk ':' stat_walk
    measure gpgsign ':' gpg_sign
done
rm -f "$WORK/floor.asc"

cpu_sample; other=$(awk -v b0="$BUSY0" -v t0="$TOTAL0" -v o0="$OURS0" -v b1="$BUSY" -v t1="$TOTAL" -v o1="$OURS" \
    'BEGIN {v = ((b1 - b0) - (o1 - o0)) / (t1 - t0) * 100; printf "%.0f", v < 0 ? 0 : v}')

# Report.
row() {   # row LABEL NAME
    local -n w="WALL_$2" r="RSS_$2"
    local wall rss lo hi
    wall=$(median "${w[@]}"); rss=$(max "${r[@]}")
    lo=$(printf '%s\n' "${w[@]}" | sort -g | head -1); hi=$(max "${w[@]}")
    awk -v l="$1" -v t="$wall" -v b="$BYTES" -v m="$rss" -v n="${#w[@]}" -v lo="$lo" -v hi="$hi" \
        'BEGIN {printf "%-44s %8.2f %9.0f %9.1f %5d %10s\n", l, t, b / 1e6 / t, m / 1024, n,
                (n > 1) ? sprintf("%.2f-%.2f", lo, hi) : "-"}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? v >= t : v < t); print ok ? "PASS" : "MISS"}'; }

rehash=$(median "${WALL_rehash[@]}"); sha=$(median "${WALL_sha[@]}"); ossl=$(median "${WALL_ossl[@]}")
first=$(median "${WALL_first[@]}"); cpsha=$(median "${WALL_cp[@]}"); resign=$(median "${WALL_resign[@]}")
syncs=$(median "${WALL_sync[@]}")

echo
printf '%-44s %8s %9s %9s %5s %10s\n' "benchmark ($NFILES files, $((BYTES / 1000000)) MB)" "wall s" "MB/s" "peak MiB" "runs" "range s"
row "sign --rehash (content already stored)" rehash
row "find | xargs -P$NPROC sha256sum" sha
row "find | xargs -P$NPROC openssl dgst -sha256" ossl
row "first sign (empty publication, incl. syncfs)" first
row "cp -a + sha256sum pipeline" cp
awk -v l="  then sync (info, not in the target)" -v t="$syncs" 'BEGIN {printf "%-44s %8.2f\n", l, t}'
row "re-sign unchanged (stat cache)" resign
row "  find -printf (stat every entry; info)" walk
row "  gpg --detach-sign manifest.json (info)" gpgsign
echo "(wall: median of the runs; MB/s: tree bytes / wall; peak: largest RSS of any one process)"
noisy=""; ((other <= 10)) || noisy="; numbers are noisy, rerun when the machine is quiet"
echo "other processes used ${other}% of the $NPROC cores during the hashing runs$noisy"

echo
r=$(ratio "$sha" "$rehash")
echo "$(verdict "$r" '>=' 1.5)  --rehash vs sha256sum pipeline: ${r}x throughput (target >= 1.5x)"
r=$(ratio "$ossl" "$rehash")
echo "$(verdict "$r" '>=' 1.0)  --rehash vs openssl pipeline:   ${r}x throughput (target >= 1.0x)"
r=$(ratio "$first" "$cpsha")
with_sync=$(ratio "$first" "$(awk -v a="$cpsha" -v b="$syncs" 'BEGIN {print a + b}')")
echo "$(verdict "$r" '<' 1.0)  first sign vs cp -a + sha256sum: ${r}x the time (target < 1.0x;" \
     "${with_sync}x against cp -a + sha256sum + sync)"
r=$(ratio "$resign" "$rehash")
echo "$(verdict "$r" '<' 0.1)  re-sign unchanged vs --rehash:  ${r}x the time (target < 0.1x)"
floor=$(awk -v a="$(median "${WALL_walk[@]}")" -v b="$(median "${WALL_gpgsign[@]}")" 'BEGIN {print a + b}')
echo "info  find's stat walk + gpg's signature: $(ratio "$floor" 1)s = $(ratio "$floor" "$rehash")x --rehash" \
     "(what any re-sign needs here, one thread; the signer walks on $NPROC)"
