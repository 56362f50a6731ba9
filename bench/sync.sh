#!/usr/bin/env bash
# Sync benchmark: `ssync-verifier sync` over HTTPS (nginx) against `rsync -a --delete` from an
# rsync daemon, on the ~1 GiB bench tree: initial sync into an empty mirror, no-op sync, and an
# update (make-tree.py --update, re-signed). Wall time, client and server CPU, bytes received
# and peak RSS per run; every ssync mirror is audited against the signed manifest, and the two
# mirrors are compared at the end. For information, stock curl also makes every request of the
# initial sync into /dev/null: the transport alone. Results: bench/sync-results.md.
#
# Usage: bash bench/sync.sh [--scheme https|http] [BUILD_DIR]
#   (default https and ./build-bench; builds nothing itself). `--scheme http` fetches from the
#   same nginx over plain HTTP/1.1 instead: unencrypted, like the rsync daemon it is compared
#   with (ssync trusts the signature, not the connection, so it may be run that way).
#
# Warm state, for both tools alike: the page cache is not dropped (not allowed, and not needed:
# 24 GiB of RAM hold the source trees, the publication and the mirrors), the trees and the
# publication are read once before measuring, and every timed step starts after an untimed
# `sync`, so that ssync's syncfs never pays for writeback the other tool left behind.
#
# Caches (bench/work/sync/, git-ignored; remade when make-tree.py changes): `base`, the tree as
# make-tree.py creates it, and `updated`, a copy of it after `make-tree.py --update`. The
# "source tree" that the signer signs and the rsync daemon serves is $RUN/src, a symlink that is
# switched from base to updated for the update step (same bytes as updating a copy in place,
# without copying and deleting 1 GiB per run). Everything else lives in one run directory under
# bench/work/sync/ and a GNUPGHOME under /tmp, removed at exit; the servers listen on 127.0.0.1
# only and are stopped by their PIDs at exit.
set -euo pipefail

SCHEME=https
if [[ ${1:-} == --scheme ]]; then
    SCHEME=${2:-}
    shift 2 || true
fi
[[ $SCHEME == https || $SCHEME == http ]] || { echo "sync.sh: --scheme https or http" >&2; exit 2; }
BIN=${1:-./build-bench}
SIGNER=$BIN/ssync-signer
VERIFIER=$BIN/ssync-verifier
for b in "$SIGNER" "$VERIFIER"; do
    if [[ ! -x $b ]]; then
        echo "sync.sh: no $b; build it first:" >&2
        echo "  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release" \
             "&& cmake --build build-bench -j2 --target ssync-signer ssync-verifier" >&2
        exit 2
    fi
done
SIGNER=$(realpath "$SIGNER")
VERIFIER=$(realpath "$VERIFIER")
for tool in /usr/bin/time python3 gpg gpgconf openssl nginx rsync curl diff sha256sum; do
    command -v "$tool" >/dev/null || { echo "sync.sh: $tool is missing" >&2; exit 2; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$HERE/work/sync      # git-ignored; apart from sign.sh's work/tree, work/pub, ...
BASE=$WORK/base
UPDATED=$WORK/updated
REPS=3                    # initial syncs: alternating pairs, each into fresh mirrors
NOOPS=3                   # no-op syncs: alternating pairs
mkdir -p "$WORK"
T_START=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }

# ---------------------------------------------------------------------------------------------
# 1. The trees (cached).
stamp=$(sha256sum "$HERE/make-tree.py" | cut -c1-16)
if [[ ! -d $BASE || ! -d $UPDATED || "$(cat "$WORK/trees.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$BASE" "$UPDATED" "$WORK/trees.stamp" "$WORK/update.txt"
    echo "making the trees (once; cached in $WORK)..."
    python3 "$HERE/make-tree.py" "$BASE"
    cp -a "$BASE" "$UPDATED"
    python3 "$HERE/make-tree.py" --update "$UPDATED" >"$WORK/update.txt"
    echo "$stamp" >"$WORK/trees.stamp"
fi

# ext4 without a journal (this VM's root file system) skips inodes freed in the last 1-5 minutes
# when it allocates new ones, at a cost per skipped inode: right after a mass delete (the last
# run's cleanup), creating 20,000 files in one directory, as ssync's staging does, costs seconds
# more than usual. Say so rather than measure it silently.
if [[ -r $WORK/last-cleanup ]] && (($(date +%s) - $(cat "$WORK/last-cleanup") < 300)); then
    echo "note: the last run's cleanup deleted ~7 GB $(($(date +%s) - $(cat "$WORK/last-cleanup"))) s ago;" \
         "file creation may be slower for a few minutes (ext4 skips recently freed inodes)"
fi

RUN=$(mktemp -d "$WORK/run.XXXXXX")
GNUPGHOME=$(mktemp -d /tmp/ssync-bench-gpg.XXXXXX)
export GNUPGHOME
NGINX_PID= RSYNCD_PID=
alive() { [[ -e /proc/$1 && "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
stop_pid() {   # stop_pid PID: SIGTERM, SIGKILL after 5 s; only our own children
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local t=$EPOCHREALTIME
    stop_pid "$NGINX_PID"
    stop_pid "$RSYNCD_PID"
    gpgconf --kill all 2>/dev/null || true   # the agent of this GNUPGHOME only
    rm -rf "$RUN" "$GNUPGHOME"
    date +%s >"$WORK/last-cleanup"
    echo "cleanup: $(since "$t") s; whole run: $(since "$T_START") s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SRC=$RUN/src              # symlink: the source tree (base, later updated)
PUB=$RUN/pub              # the publication nginx serves
KEYS=$RUN/keys.asc
LOG=$RUN/log
: >"$LOG"
ln -s "$BASE" "$SRC"
die() { echo "sync.sh: $*" >&2; echo "--- log (last lines):" >&2; tail -30 "$LOG" >&2; exit 1; }

BYTES=$(find "$BASE" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
NFILES=$(find "$BASE" -type f | wc -l)

# ---------------------------------------------------------------------------------------------
# 2. Throwaway key; sign the base tree.
gpg --batch --quiet --passphrase '' \
    --quick-gen-key 'ssync sync benchmark, throwaway <bench@example.invalid>' ed25519 sign never 2>>"$LOG"
FPR=$(gpg --list-secret-keys --with-colons 2>>"$LOG" | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --armor --export "$FPR" >"$KEYS" 2>>"$LOG"

json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$RUN/$1" "$2"; }
sign() {   # sign ROOT
    local t=$EPOCHREALTIME
    "$SIGNER" sign --root "$1" --out "$PUB" --key "$FPR" --gnupghome "$GNUPGHOME" \
        --name bench --json >"$RUN/sign.json" 2>>"$LOG" || die "ssync-signer failed"
    echo "  signed serial $(json sign.json serial) in $(since "$t") s: $(json sign.json files) files," \
         "$(json sign.json files_hashed) hashed, $(json sign.json objects_stored) objects stored"
}
echo "signing $NFILES files, $((BYTES / 1000000)) MB..."
sign "$BASE"

# ---------------------------------------------------------------------------------------------
# 3. Servers: nginx (HTTPS, throwaway CA) on the publication, an rsync daemon on the source.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
NG=$RUN/nginx
mkdir -p "$NG"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$NG/ca.key" -out "$NG/ca.pem" -days 2 -subj "/CN=ssync bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >>"$LOG" 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$NG/server.key" -out "$NG/server.csr" -subj "/CN=localhost" >>"$LOG" 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$NG/server.ext"
openssl x509 -req -in "$NG/server.csr" -CA "$NG/ca.pem" -CAkey "$NG/ca.key" -CAcreateserial \
    -out "$NG/server.pem" -days 2 -extfile "$NG/server.ext" >>"$LOG" 2>&1
CA=$NG/ca.pem

start_nginx() {   # stock settings (http2 limits, buffers) apart from paths and keepalive_requests
    HTTPS_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    cat >"$NG/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 512; }
http {
  log_format bench '\$connection \$server_protocol \$status \$bytes_sent "\$request_uri"';
  access_log $NG/access.log bench;
  client_body_temp_path $NG/body;
  proxy_temp_path $NG/proxy;
  fastcgi_temp_path $NG/fastcgi;
  uwsgi_temp_path $NG/uwsgi;
  scgi_temp_path $NG/scgi;
  default_type application/octet-stream;
  sendfile on;
  # What docs/operators.md recommends for a publication's server: the default (1000) closes the
  # HTTP/2 connection every 1000 requests, 20 times in a mirror's first sync of this tree.
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$HTTPS_PORT ssl http2;
    listen 127.0.0.1:$HTTP_PORT;
    ssl_certificate $NG/server.pem;
    ssl_certificate_key $NG/server.key;
    root $PUB;
    location ~ /\. { deny all; }
    location /objects/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
EOF
    nginx -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" >>"$NG/nginx.out" 2>&1 &
    NGINX_PID=$!
}
start_rsyncd() {
    RSYNC_PORT=$(free_port)
    cat >"$RUN/rsyncd.conf" <<EOF
address = 127.0.0.1
use chroot = false
log file = $RUN/rsyncd.log
[bench]
  path = $SRC
  read only = true
  munge symlinks = false
  uid = 0
  gid = 0
EOF
    rsync --daemon --no-detach --port="$RSYNC_PORT" --config="$RUN/rsyncd.conf" >>"$LOG" 2>&1 &
    RSYNCD_PID=$!
}
wait_up() {   # wait_up PID CHECK...: until CHECK succeeds; fails if PID dies or after 10 s
    local pid=$1 i; shift
    for ((i = 0; i < 100; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        alive "$pid" || return 1
        sleep 0.1
    done
    return 1
}
for attempt in 1 2 3; do   # a probed port can be taken before the server binds it: retry
    start_nginx
    wait_up "$NGINX_PID" curl -sf --cacert "$CA" "https://127.0.0.1:$HTTPS_PORT/latest" &&
        wait_up "$NGINX_PID" curl -sf "http://127.0.0.1:$HTTP_PORT/latest" && break
    stop_pid "$NGINX_PID"; NGINX_PID=
done
[[ -n $NGINX_PID ]] || { cat "$NG/error.log" "$NG/nginx.out" >&2; die "nginx did not start"; }
for attempt in 1 2 3; do
    start_rsyncd
    wait_up "$RSYNCD_PID" rsync "rsync://127.0.0.1:$RSYNC_PORT/" && break
    stop_pid "$RSYNCD_PID"; RSYNCD_PID=
done
[[ -n $RSYNCD_PID ]] || die "rsync daemon did not start"
if [[ $SCHEME == https ]]; then
    URL=https://127.0.0.1:$HTTPS_PORT/
    OVER="HTTPS"
    CONN_KIND="TLS connection(s)"
else
    URL=http://127.0.0.1:$HTTP_PORT/
    OVER="plain HTTP (no TLS, like the rsync daemon)"
    CONN_KIND="TCP connection(s)"
fi
RURL=rsync://127.0.0.1:$RSYNC_PORT/bench/
echo "nginx $URL (pid $NGINX_PID), rsync daemon on port $RSYNC_PORT (pid $RSYNCD_PID)"

# ---------------------------------------------------------------------------------------------
# 4. Measurements.
warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null; }
warm "$BASE" "$UPDATED" "$PUB/objects"

server_cpu() {   # CPU seconds used so far by nginx, or by the rsync daemon's reaped children
    case $1 in
        ssync) awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$NGINX_PID/stat" ;;
        rsync) awk '{printf "%.2f", ($16 + $17) / 100}' "/proc/$RSYNCD_PID/stat" ;;
    esac
}
# measure VAR TOOL CMD...: untimed sync, then CMD under /usr/bin/time (stdout to $RUN/VAR.out).
# Sets VAR_wall, VAR_rss (KiB: the largest of the process and its waited-for children),
# VAR_cpu (client user+sys s), VAR_scpu (server CPU s), VAR_sync (an untimed sync right after:
# the writeback the step left; ssync already flushed its own).
measure() {
    local var=$1 tool=$2; shift 2
    sync
    local t0 t1 s0 s1
    s0=$(server_cpu "$tool")
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M %U %S' -o "$RUN/time" "$@" >"$RUN/$var.out" 2>>"$LOG" || die "failed: $*"
    t1=$EPOCHREALTIME
    printf -v "${var}_wall" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')"
    read -r rss u s <"$RUN/time"
    printf -v "${var}_rss" '%s' "$rss"
    printf -v "${var}_cpu" '%s' "$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')"
    t0=$EPOCHREALTIME; sync; t1=$EPOCHREALTIME
    printf -v "${var}_sync" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')"
    s1=$(server_cpu "$tool")   # after the sync: the daemon has reaped its child by now
    printf -v "${var}_scpu" '%s' "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')"
}
nginx_lines() { wc -l <"$NG/access.log"; }
run_ssync() {   # run_ssync VAR DEST STATE: one sync, then an (untimed) audit of DEST
    local var=$1 dest=$2 state=$3 before
    before=$(nginx_lines)
    measure "$var" ssync "$VERIFIER" sync --from "$URL" --ca-file "$CA" --to "$dest" \
        --keyring "$KEYS" --state "$state" --name bench --json
    tail -n +"$((before + 1))" "$NG/access.log" >"$RUN/$var.access"
    printf -v "${var}_bytes" '%s' "$(json "$var.out" bytes_fetched)"
    printf -v "${var}_wire" '%s' "$(awk '{s += $4} END {print s + 0}' "$RUN/$var.access")"
    printf -v "${var}_files" '%s' "$(json "$var.out" files_fetched)"
    printf -v "${var}_inner" '%.2f' "$(json "$var.out" seconds)"
    printf -v "${var}_phases" '%s' "$(python3 -c 'import json, sys
p = json.load(open(sys.argv[1])).get("phases", {})
print(" ".join("%s %.2f" % (k, p[k]) for k in ("release", "plan", "stage", "flush", "apply", "record") if k in p))' "$RUN/$var.out")"
    "$VERIFIER" audit --from "$PUB" --keyring "$KEYS" --ignore-owner --quiet "$dest" >>"$LOG" 2>&1 ||
        die "audit of the ssync mirror $dest failed after $var"
    AUDITS=$((AUDITS + 1))
}
run_rsync() {   # run_rsync VAR DEST
    local var=$1 dest=$2 bvar=${1}_bytes
    measure "$var" rsync rsync -a --delete --stats "$RURL" "$dest/"
    printf -v "${var}_bytes" '%s' "$(awk -F': ' '/^Total bytes received/ {gsub(/,/, "", $2); print $2}' "$RUN/$var.out")"
    printf -v "${var}_wire" '%s' "${!bvar}"
    printf -v "${var}_files" '%s' "$(awk -F': ' '/^Number of regular files transferred/ {gsub(/,/, "", $2); print $2}' "$RUN/$var.out")"
    printf -v "${var}_inner" '%s' "-"
    printf -v "${var}_phases" '%s' "-"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# pick PREFIX N...: copies the fields of the run whose wall time is the median into PREFIX_*
pick() {
    local prefix=$1 best="" f; shift
    local -a walls=()
    for v in "$@"; do f=${v}_wall; walls+=("${!f}"); done
    local m; m=$(median "${walls[@]}")
    for v in "$@"; do f=${v}_wall; [[ ${!f} == "$m" && -z $best ]] && best=$v; done
    for field in wall rss cpu scpu sync bytes wire files inner phases; do
        f=${best}_$field; printf -v "${prefix}_$field" '%s' "${!f}"
    done
    printf -v "${prefix}_runs" '%s' "${walls[*]}"
}
AUDITS=0

# Noise gauge: CPU time used by anything but this script and its children, from /proc/stat.
# The servers are not our children in this sense: their CPU is added from their own counters.
cpu_sample() {
    read -r _ u n sy idle io irq sirq steal _ </proc/stat
    BUSY=$((u + n + sy + irq + sirq + steal)); TOTAL=$((BUSY + idle + io))
    local f; f=$(sed 's/.*) //' /proc/$$/stat)
    OURS=$(awk '{print $12 + $13 + $14 + $15}' <<<"$f")   # utime stime cutime cstime
    OURS=$((OURS + $(awk '{print $14 + $15}' "/proc/$NGINX_PID/stat") + $(awk '{print $16 + $17}' "/proc/$RSYNCD_PID/stat")))
}
cpu_sample; BUSY0=$BUSY; TOTAL0=$TOTAL; OURS0=$OURS
T_MEASURE=$EPOCHREALTIME

echo "initial sync ($REPS alternating pairs, each into empty mirrors):"
declare -a R_INIT=() S_INIT=()
for ((i = 1; i <= REPS; i++)); do
    M_SSYNC=$RUN/mirror-ssync.$i M_RSYNC=$RUN/mirror-rsync.$i STATE=$RUN/state.$i
    mkdir -p "$STATE"
    if ((i % 2)); then
        run_rsync "r_init$i" "$M_RSYNC"; run_ssync "s_init$i" "$M_SSYNC" "$STATE"
    else
        run_ssync "s_init$i" "$M_SSYNC" "$STATE"; run_rsync "r_init$i" "$M_RSYNC"
    fi
    R_INIT+=("r_init$i"); S_INIT+=("s_init$i")
    w1=r_init${i}_wall w2=s_init${i}_wall
    echo "  pair $i: rsync ${!w1} s, ssync ${!w2} s"
done
pick r_init "${R_INIT[@]}"; pick s_init "${S_INIT[@]}"
protocol=$(awk '{print $2}' "$RUN/s_init1.access" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
conns=$(awk '{print $1}' "$RUN/s_init1.access" | sort -u | wc -l)
reqs=$(wc -l <"$RUN/s_init1.access")

# For information: the transport alone. Stock curl makes the requests the first initial sync
# made (the release, the pack index, the packs, the objects outside them), over the same server
# and scheme (--parallel: 64 at once, HTTP/2 multiplexed over TLS), into /dev/null: no
# hashing, no writing, no verification.
python3 - "$RUN/s_init1.access" "$URL" >"$RUN/curl.cfg" <<'EOF2'
import sys
for line in open(sys.argv[1]):
    if line.split()[2] != "200":
        continue  # the probe for a mirror's .ssync/latest: refused by the publication's server
    uri = line.rsplit('"', 2)[-2].lstrip("/")
    print('url = "%s%s"\noutput = "/dev/null"' % (sys.argv[2], uri))
EOF2
measure c_init ssync curl --silent --show-error --fail --parallel --parallel-max 64 --cacert "$CA" -K "$RUN/curl.cfg"
echo "  curl alone: $c_init_wall s"

# Further steps use the last pair's mirrors.
echo "no-op sync ($NOOPS alternating pairs):"
declare -a R_NOOP=() S_NOOP=()
for ((i = 1; i <= NOOPS; i++)); do
    run_ssync "s_noop$i" "$M_SSYNC" "$STATE"; run_rsync "r_noop$i" "$M_RSYNC"
    f1=s_noop${i}_files f2=r_noop${i}_files
    [[ ${!f1} == 0 && ${!f2} == 0 ]] || die "a no-op sync transferred files"
    [[ $(json "s_noop$i.out" noop) == True ]] || die "ssync did not report a no-op"
    R_NOOP+=("r_noop$i"); S_NOOP+=("s_noop$i")
done
pick r_noop "${R_NOOP[@]}"; pick s_noop "${S_NOOP[@]}"
echo "  rsync $r_noop_runs s; ssync $s_noop_runs s"

echo "update: $(cat "$WORK/update.txt" | sed "s|$UPDATED|the source tree|")"
ln -sfn "$UPDATED" "$SRC"
sign "$UPDATED"
warm "$PUB/objects"
run_ssync s_upd "$M_SSYNC" "$STATE"; run_rsync r_upd "$M_RSYNC"
echo "  rsync $r_upd_wall s, ssync $s_upd_wall s"
T_MEASURED=$(since "$T_MEASURE")

cpu_sample
OTHER=$(awk -v b0="$BUSY0" -v t0="$TOTAL0" -v o0="$OURS0" -v b1="$BUSY" -v t1="$TOTAL" -v o1="$OURS" \
    'BEGIN {v = ((b1 - b0) - (o1 - o0)) / (t1 - t0) * 100; printf "%.0f", v < 0 ? 0 : v}')

# Update bound: content the old release lacks (edited and added files and the two patched
# binaries; renamed files keep their content), plus the new manifest, its signature, `latest`.
read -r BOUND NEWC NEWB MANB < <(python3 - "$PUB" <<'EOF'
import json, os, sys
pub = sys.argv[1]
serial = int(open(os.path.join(pub, "latest")).read())
def load(n):
    with open(os.path.join(pub, "releases", str(n), "manifest.json"), "rb") as f:
        return json.load(f)
old, new = load(serial - 1), load(serial)
have = {e["sha256"] for e in old["entries"] if e["type"] == "file"}
lack = {e["sha256"]: e["size"] for e in new["entries"] if e["type"] == "file" and e["sha256"] not in have}
rel = os.path.join(pub, "releases", str(serial))
meta = sum(os.path.getsize(os.path.join(rel, f)) for f in ("manifest.json", "manifest.json.asc"))
meta += os.path.getsize(os.path.join(pub, "latest"))
print(sum(lack.values()) + meta, len(lack), sum(lack.values()), meta)
EOF
)

# ---------------------------------------------------------------------------------------------
# 5. The two mirrors must be the same tree, and the rsync one the source: content (diff -r,
#    symlinks compared as links) and metadata (type, mode, size, file mtime, symlink target).
echo "comparing the mirrors..."
diff -r --no-dereference -x .ssync "$M_SSYNC" "$M_RSYNC" >"$RUN/diff" 2>&1 || {
    head -20 "$RUN/diff" >&2; die "diff -r: the mirrors differ"; }
listing() {
    (cd "$1" && find . -path ./.ssync -prune -o ! -path . \
        \( -type f -printf '%P f %m %s %T@ %u %g\n' -o -type l -printf '%P l %l\n' -o -printf '%P %y %m %u %g\n' \) |
        LC_ALL=C sort)
}
diff <(listing "$M_SSYNC") <(listing "$M_RSYNC") >"$RUN/meta.diff" || {
    head -20 "$RUN/meta.diff" >&2; die "the mirrors' metadata differ"; }
diff <(listing "$UPDATED") <(listing "$M_RSYNC") >"$RUN/meta.diff" || {
    head -20 "$RUN/meta.diff" >&2; die "the rsync mirror differs from the source"; }

# ---------------------------------------------------------------------------------------------
# Report.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {print (a <= b) ? "PASS" : "MISS"}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1e6}'; }
row() {   # row STEP TOOL PREFIX
    local p=$3 w r b wi f s in c sc
    w=${p}_wall r=${p}_rss b=${p}_bytes wi=${p}_wire f=${p}_files s=${p}_sync in=${p}_inner c=${p}_cpu sc=${p}_scpu
    printf '| %-7s | %-5s | %7.2f | %6s | %6s | %6s | %9s | %9s | %6s | %7.1f | %5s |\n' "$1" "$2" "${!w}" "${!in}" \
        "${!c}" "${!sc}" "$(mb "${!b}")" "$(mb "${!wi}")" "${!f}" "$(awk -v k="${!r}" 'BEGIN {print k / 1024}')" "${!s}"
}
{
echo
echo "## $(date -u +%Y-%m-%dT%H:%MZ): $NFILES files, $((BYTES / 1000000)) MB, $(nproc) cores, loopback"
echo
echo "ssync-verifier sync over $OVER (nginx $(nginx -v 2>&1 | sed 's|.*/||'), $protocol) vs" \
     "rsync -a --delete from an rsync daemon ($(rsync --version | awk 'NR == 1 {print $3}')); warm page cache (nothing dropped)."
echo
echo "| step    | tool  |  wall s | ssync s | cpu s  | srv s  | payload MB | wire MB   | files  | peak MiB | +sync |"
echo "|---------|-------|--------:|--------:|-------:|-------:|-----------:|----------:|-------:|---------:|------:|"
row initial rsync r_init
row initial ssync s_init
row no-op   rsync r_noop
row no-op   ssync s_noop
row update  rsync r_upd
row update  ssync s_upd
echo
echo "- wall: the client process, incl. ssync's syncfs; the median run is shown (initial: $REPS pairs," \
     "rsync $r_init_runs, ssync $s_init_runs; no-op: $NOOPS pairs, rsync $r_noop_runs, ssync $s_noop_runs)."
echo "- ssync s: ssync's own --json seconds. cpu: client user+sys. srv: server CPU (nginx; the rsync daemon's child)."
echo "- payload: ssync bytes_fetched / rsync 'Total bytes received'. wire: bytes nginx sent (headers + bodies," \
     "before TLS); for rsync the same as payload. files: files_fetched / regular files transferred."
echo "- peak: max RSS of the client's largest process. +sync: an untimed sync right after the step" \
     "(the writeback the step left behind; ssync flushes before it returns)."
echo "- ssync's phases (s, median runs): initial: $s_init_phases; update: $s_upd_phases."
echo "- initial ssync: $reqs HTTP requests ($(json s_init1.out packs_fetched) of them packs) over $conns $CONN_KIND, $protocol (keepalive_requests 100000, as docs/operators.md recommends)."
echo "- update bound: $(mb "$BOUND") MB = $NEWC contents the old release lacks ($(mb "$NEWB") MB) + manifest, signature, latest ($(mb "$MANB") MB)."
echo "- ssync update: $(json s_upd.out added) added, $(json s_upd.out changed) changed, $(json s_upd.out removed) removed," \
     "$(json s_upd.out files_copied_locally) copied locally (renames)."
echo "- checks: $AUDITS audits of ssync mirrors passed (audit --from PUB --ignore-owner); final mirrors identical" \
     "(diff -r --no-dereference -x .ssync, and type/mode/size/mtime/owner/target listing); rsync mirror = source."
echo "- other processes used ${OTHER}% of the $(nproc) cores during the ${T_MEASURED} s of measurements$( ((OTHER > 10)) && echo " (noisy: rerun when the machine is quiet)")."
echo
r=$(ratio "$s_init_wall" "$r_init_wall")
echo "- $(le "$r" 1.0) initial sync: ssync ${r}x rsync's time (target <= 1.0x; against rsync + its writeback: $(ratio "$s_init_wall" "$(awk -v a="$r_init_wall" -v b="$r_init_sync" 'BEGIN {print a + b}')")x)"
r=$(ratio "$s_noop_wall" "$r_noop_wall")
echo "- $(le "$r" 0.5) no-op sync: ssync ${r}x rsync's time (target <= 0.5x)"
r=$(ratio "$s_upd_bytes" "$BOUND")
echo "- $(le "$s_upd_bytes" "$BOUND") update bytes: ssync $(mb "$s_upd_bytes") MB = ${r}x the bound (target <= 1.0x; rsync, with deltas: $(mb "$r_upd_bytes") MB)"
echo "- info update time: ssync $(ratio "$s_upd_wall" "$r_upd_wall")x rsync's time (no target)"
echo "- info transport alone: curl making the same $(grep -c '^url' "$RUN/curl.cfg") requests over $OVER into /dev/null" \
     "(--parallel 64; no hashing, no writing) took ${c_init_wall} s (cpu ${c_init_cpu} s, srv ${c_init_scpu} s):" \
     "$(ratio "$c_init_wall" "$r_init_wall")x rsync's initial sync, $(ratio "$c_init_wall" "$s_init_wall")x ssync's"
} | tee "$WORK/last-report.md"
