// The publication: what ssync-signer writes and any plain server serves (docs/publication.md).
//
//   PUB/latest                         "<serial>\n": the current release (unsigned pointer)
//   PUB/releases/<serial>/manifest.json      immutable, one directory per release
//   PUB/releases/<serial>/manifest.json.asc
//   PUB/manifest.json, manifest.json.asc     the current release again, for people and gpg
//   PUB/releases/<serial>/packs        the release's pack index (ssync/packs.h; unsigned)
//   PUB/objects/<aa>/<sha256>          file content by hash, immutable, mode 0444
//   PUB/packs/<sha256>.pack            small objects concatenated, immutable, mode 0444
//   PUB/tree/<path>                    the current release as a plain tree: hard links to
//                                      objects (regular files and directories only)
//   PUB/.ssync-signer/                 the signer's lock, stat cache and last-release record
//                                      (not for serving)
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>

#include "ssync/fs.h"
#include "ssync/manifest.h"
#include "ssync/report.h"
#include "ssync/scan.h"
#include "ssync/status.h"

namespace ssync {

namespace layout {
inline constexpr const char* kManifest = "manifest.json";
inline constexpr const char* kSignature = "manifest.json.asc";
inline constexpr const char* kLatest = "latest";
inline constexpr const char* kObjects = "objects";
inline constexpr const char* kReleases = "releases";
inline constexpr const char* kTree = "tree";
inline constexpr const char* kSignerDir = ".ssync-signer";
inline constexpr const char* kSignerLock = "lock";  // in kSignerDir: held by sign and gc
// "objects/ab/abcdef…"
std::string object_path(std::string_view sha256);
// Which of the 256 directories objects are spread over holds `sha256`: 0-255 from its first
// two lowercase hex digits ("ab" -> 171), -1 when they are not. DEST's staging uses it too.
int fan_index(std::string_view sha256);
// "releases/42"
std::string release_dir(std::uint64_t serial);
// The serial in `latest`'s text (a trailing newline allowed) or a release directory's name:
// decimal, at least 1; nullopt for anything else.
std::optional<std::uint64_t> parse_serial(std::string_view text);
}  // namespace layout

// Signs manifest bytes; returns the armoured detached signature. publish() may call it twice
// (never at once), from a thread of its own: re-signing what looks like an unchanged tree, it
// signs beside the walk, and throws that signature away if the walk finds a change.
using SignFunction = std::function<Result<std::string>(std::string_view manifest_bytes)>;

struct PublishOptions {
    std::string name;                      // empty: the previous manifest's name
    // Empty: one above the highest serial the publication has published or started (`latest`,
    // every releases/N, the manifests), or 1. Given, it must be above that too.
    std::optional<std::uint64_t> serial;
    std::int64_t now = 0;                  // "created"
    std::int64_t valid_for = 7 * 86400;    // expires = now + valid_for
    bool rehash = false;                   // ignore the stat cache
    // Write packs/ and releases/N/packs for the new release (sign --no-packs: false, and the
    // release has no index).
    bool packs = true;
    SpecialFiles special = SpecialFiles::refuse;
    unsigned threads = 0;                  // 0: one per core
    bool progress = false;                 // show progress on stderr
    FileSystem* fs = nullptr;              // nullptr: system_fs()
    // A check that runs beside the scan and the hashing (a signer looks its key up): polled
    // between files, so that a failure stops the run without hashing the rest (a typo in the
    // key does not cost a gigabyte of hashing), and awaited before signing.
    std::shared_future<Status> preflight;
};

struct PublishStats {
    std::uint64_t files = 0, dirs = 0, symlinks = 0;
    std::uint64_t files_hashed = 0;   // read and hashed this run
    std::uint64_t files_cached = 0;   // digest taken from the stat cache
    std::uint64_t bytes_hashed = 0;
    std::uint64_t objects_stored = 0, bytes_stored = 0;
    // New packs the release's index lists (the others it lists were the previous release's).
    std::uint64_t packs_written = 0, bytes_packed = 0;
    std::uint64_t bytes = 0;          // of all files of the release
    // Nothing changed since the last release: it was made from that one's entries with a new
    // header (see LastRelease in publication.cpp).
    bool reused_entries = false;
    // Wall seconds per phase: walking the tree, with the previous release read and the files
    // the stat cache knows settled (cached or hashed) beside it; storing new content (incl.
    // syncfs); making the manifest and its signature (incl. waiting for the key lookup);
    // writing the release and switching to it (incl. tree/).
    struct Phases {
        double scan = 0, hash = 0, sign = 0, write = 0;
    } phases;
};

struct PublishResult {
    Manifest header;             // name, serial, dates; no entries (parse manifest_bytes for them)
    std::string manifest_bytes;  // what was signed
    std::string manifest_sha256;
    PublishStats stats;
    // The entries the run built (none when it reused the last release's). Handed over rather
    // than freed inside publish(): a caller about to exit need not free tens of thousands of
    // entries one string at a time (~50 ms on the bench tree).
    std::vector<Entry> entries;
};

// Scans `source`, stores new content as objects and (options.packs) its small objects that no
// pack of the previous release holds as new packs, then writes and signs the manifest, writes
// the pack index beside it, and makes it current. The new release becomes visible only after all of its content is durable
// (syncfs) and its signature is written; readers that follow `latest` see the old release or
// the new one, never a mix. On error the current release stays as it was. Errors name the
// path: io for the file system (also a source file that changes while it is read, and a
// symlink or file where objects/, packs/, releases/ or .ssync-signer/ should be a directory),
// bad_manifest for an inconsistent previous publication or a serial that does not increase,
// whatever sign() returns for signing problems. Nothing is written outside `publication`: no
// symlink below it is followed.
Result<PublishResult> publish(const std::string& source, const std::string& publication,
                              const PublishOptions& options, const SignFunction& sign);

// The current release's manifest bytes in a local publication (no verification: this is the
// master reading its own output). Returns std::nullopt in the result when there is none yet.
Result<std::optional<std::string>> read_current_manifest(int pub_fd);

}  // namespace ssync
