// The signer's side of packs (ssync/packs.h has the format): which packs a new release lists,
// writing the new ones, and reading the indexes a publication holds. Used by publish() and by
// collect_garbage(); mirrors never call it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ssync/fs.h"
#include "ssync/packs.h"
#include "ssync/status.h"

namespace ssync {

// The index in `release_fd` (a releases/<serial> directory), read without following a symlink
// and bounded by kMaxPackIndexBytes. nullopt when there is none (a release made with
// --no-packs, or before packs). Errors: what reading it failed with; bad_manifest, "DISPLAY:
// line N: ...", for one that does not parse. `display` names it in messages.
Result<std::optional<PackIndex>> read_pack_index(int release_fd, const std::string& display);

// Whether packs_fd (PUB/packs) holds `pack` as its index describes it: packs/<sha256>.pack is a
// regular file (not a symlink: never followed) of the index's size. Its bytes are not read: a
// pack that lies costs mirrors a fallback, never a wrong file.
bool pack_present(int packs_fd, const Pack& pack);

// A release's index before its new packs are written. `index.packs` holds first the packs of
// `usable` that hold at least one of the release's small objects, whole and in their order,
// then the new packs: the small objects no usable pack holds, in the order given, each pack
// closed once it reaches kPackTargetSize. A new pack has its objects and size; its sha256 is
// empty until write_pack() fills it in.
struct PackPlan {
    PackIndex index;
    std::size_t first_new = 0;  // index.packs[first_new...] are to be written
};

// `small`: the release's distinct objects of kPackMaxObjectSize bytes or less, in the
// manifest's path order (first occurrence). `usable`: the previous release's packs that
// pack_present() found; no digest in two of them (as parse_pack_index() guarantees).
PackPlan plan_packs(const std::vector<PackedObject>& small, const std::vector<Pack>& usable);

// Writes new packs into PUB/packs from the objects PUB/objects holds. Every file is reached
// through descriptors opened without following symlinks: temporaries go to objects/tmp (which
// the signer and gc clear of leftovers), and are renamed to packs/<sha256>.pack, mode 0444. No
// fsync: the caller's syncfs makes them durable with the objects.
class PackWriter {
public:
    // `fan_out(sha256)`: the fan-out directory of objects/ that holds that object. `publication`
    // names the publication in messages.
    PackWriter(FileSystem& fs, int tmp_fd, int packs_fd, std::function<int(std::string_view)> fan_out,
               std::string publication)
        : fs_(fs), tmp_fd_(tmp_fd), packs_fd_(packs_fd), fan_out_(std::move(fan_out)),
          publication_(std::move(publication)) {}

    // Writes `pack` (its objects and size set, as plan_packs() leaves them) and sets its
    // sha256. Safe to call from several threads at once. Errors (io) name the path in the
    // publication: an object that is missing or not of the manifest's size
    // (PUB/objects/ab/ab3f...), a write that failed (PUB/objects/tmp/p...: No space left on
    // device); the temporary is then removed. A regular file already under the pack's name
    // holds the same bytes and is kept.
    Status write_pack(Pack& pack);

private:
    std::string in_publication(std::string_view relative) const;

    FileSystem& fs_;
    int tmp_fd_, packs_fd_;
    std::function<int(std::string_view)> fan_out_;
    std::string publication_;
    std::atomic<std::uint64_t> counter_{0};
};

}  // namespace ssync
