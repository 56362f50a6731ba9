// Removing from a publication what no kept release needs: old releases/N and the objects and
// packs only they referenced. Without it a publication only grows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ssync/fs.h"
#include "ssync/status.h"

namespace ssync {

struct CollectOptions {
    // Releases to keep: the current one (`latest`) and the newest keep-1 before it. Mirrors
    // read only `latest`, so one is enough for them; more lets a mirror that read `latest`
    // just before a new release finish fetching it.
    std::uint64_t keep = 2;
    bool dry_run = false;     // report what would go, remove nothing
    FileSystem* fs = nullptr; // nullptr: system_fs()
};

struct CollectResult {
    std::vector<std::uint64_t> kept;              // newest first
    std::vector<std::uint64_t> removed_releases;  // incl. unpublished ones above `latest`
    std::uint64_t objects_kept = 0;
    std::uint64_t objects_removed = 0, bytes_removed = 0;
    std::uint64_t temporaries_removed = 0;        // objects/tmp leftovers of failed runs (objects, packs)
    std::uint64_t packs_kept = 0;
    std::uint64_t packs_removed = 0, pack_bytes_removed = 0;
};

// Takes the signer's lock (Code::busy while a `sign` runs), reads and parses the manifest and
// the pack index (when it has one) of every kept release (any that cannot be read or parsed:
// an error, and nothing is removed), then removes the other release directories, every object
// no kept manifest lists and every pack no kept index lists. Names that ssync would not have
// written (not a serial, not a digest, not <digest>.pack) are left alone.
Result<CollectResult> collect_garbage(const std::string& publication, const CollectOptions& options);

}  // namespace ssync
