// A mirror's side of packs (ssync/packs.h): small objects fetched a pack at a time, each cut
// out of the pack's stream and checked exactly like a download of its own.
#pragma once

#include <cstdint>
#include <vector>

#include "ssync/packs.h"
#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

struct PackFetchStats {
    std::uint64_t packs = 0;           // packs fetched (whole or in part)
    std::uint64_t bytes = 0;           // bytes received from them
    std::uint64_t objects = 0;         // downloads they delivered, verified
    std::uint64_t object_bytes = 0;    // the bytes of those
};

// Fetches, from `transport`, each pack of `index` that holds at least half its bytes' worth
// of `downloads` (by digest, and only where the index's size is the download's size: the
// download's size and digest come from the signed manifest), and writes every such piece
// through a DownloadWriter as if it had been downloaded alone: bounded, hashed, the
// on_verified hook run, progress reported. Returns the downloads still to fetch: those no
// chosen pack held, and those a pack failed to deliver intact (a missing pack, a failed
// fetch, a piece that does not hash to its digest: the index and the packs are not signed,
// so a lie costs only the fallback). Errors, which fail the batch: anything a writer reports
// other than a wrong body (the local disk: io; the hook's errors).
Result<std::vector<Download>> fetch_from_packs(Transport& transport, const PackIndex& index,
                                               std::vector<Download> downloads, const DownloadOptions& options,
                                               PackFetchStats* stats = nullptr);

}  // namespace ssync
