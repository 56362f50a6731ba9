#include "ssync/pack_fetch.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "ssync/download_queue.h"

namespace ssync {

namespace {

constexpr std::size_t kNoPiece = SIZE_MAX;

// A chosen pack: for each of its objects, the index of the piece (in the pieces handed to the
// DownloadQueue) it is cut into, or kNoPiece for an object not wanted.
struct ChosenPack {
    const Pack* pack;
    std::vector<std::size_t> piece_of;
};

// Walks one pack's stream, handing each wanted object's bytes to the queue and finishing it
// where it ends. Sizes are the index's, checked equal to the manifest's for every wanted
// object, so no piece ever gets a byte past its size.
class PackSplitter {
public:
    PackSplitter(const ChosenPack& chosen, DownloadQueue& queue, std::vector<std::size_t>& finished)
        : chosen_(chosen), queue_(queue), finished_(finished) {
        settle();
    }

    Status write(const char* p, std::size_t n) {
        while (n > 0) {
            if (object_ == objects().size()) {
                return Status(Code::transport, "more bytes than the pack index gives");  // fetch_to bounds it
            }
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, left_));
            std::size_t piece = chosen_.piece_of[object_];
            if (piece != kNoPiece) {
                queue_.append(piece, p, take);
                started_ = true;
            }
            p += take;
            n -= take;
            left_ -= take;
            if (left_ == 0) {
                complete();
                settle();
            }
        }
        return Status::ok();
    }

    // The stream ended (whole or not): a piece cut short is dropped.
    void end() {
        if (object_ < objects().size() && started_) queue_.abandon(chosen_.piece_of[object_]);
    }

private:
    const std::vector<PackedObject>& objects() const { return chosen_.pack->objects; }

    void complete() {
        std::size_t piece = chosen_.piece_of[object_];
        if (piece != kNoPiece) {
            queue_.finish(piece);
            finished_.push_back(piece);
        }
        started_ = false;
        ++object_;
    }

    // Moves past empty objects (complete as soon as they are reached) to the next with bytes.
    void settle() {
        while (object_ < objects().size() && objects()[object_].size == 0) complete();
        if (object_ < objects().size()) left_ = objects()[object_].size;
    }

    const ChosenPack& chosen_;
    DownloadQueue& queue_;
    std::vector<std::size_t>& finished_;
    std::size_t object_ = 0;
    std::uint64_t left_ = 0;
    bool started_ = false;  // the current object's piece got bytes
};

}  // namespace

Result<std::vector<Download>> fetch_from_packs(Transport& transport, const PackIndex& index,
                                               std::vector<Download> downloads, const DownloadOptions& options,
                                               PackFetchStats* stats) {
    std::unordered_map<std::string_view, std::size_t> wanted;  // digest -> index in downloads
    for (std::size_t i = 0; i < downloads.size(); ++i) wanted.emplace(downloads[i].sha256, i);

    // A pack is worth its request when at least half of its bytes are wanted: a first sync
    // takes every pack whole; a mirror a release behind skips the packs of content it has.
    std::vector<Download> pieces;
    std::vector<std::size_t> download_of_piece;
    std::vector<ChosenPack> chosen;
    std::vector<bool> taken(downloads.size(), false);
    for (const Pack& pack : index.packs) {
        std::uint64_t wanted_bytes = 0;
        std::size_t wanted_objects = 0;
        for (const PackedObject& o : pack.objects) {
            auto it = wanted.find(o.sha256);
            if (it != wanted.end() && !taken[it->second] && downloads[it->second].size == o.size) {
                wanted_bytes += o.size;
                ++wanted_objects;
            }
        }
        if (wanted_objects == 0 || wanted_bytes < pack.size - wanted_bytes) continue;
        ChosenPack c{&pack, std::vector<std::size_t>(pack.objects.size(), kNoPiece)};
        for (std::size_t k = 0; k < pack.objects.size(); ++k) {
            auto it = wanted.find(pack.objects[k].sha256);
            if (it == wanted.end() || taken[it->second] || downloads[it->second].size != pack.objects[k].size) continue;
            taken[it->second] = true;
            c.piece_of[k] = pieces.size();
            pieces.push_back(downloads[it->second]);
            download_of_piece.push_back(it->second);
        }
        chosen.push_back(std::move(c));
    }
    if (chosen.empty()) return downloads;

    std::vector<bool> delivered(downloads.size(), false);
    Status failure;  // the first fatal verdict: the local disk, the hook
    std::size_t verdicts_seen = 0;
    DownloadQueue queue(pieces, options, 64);
    auto take = [&](std::chrono::milliseconds timeout) {
        for (DownloadQueue::Verdict& v : queue.take_verdicts(timeout)) {
            ++verdicts_seen;
            if (v.status) {
                delivered[download_of_piece[v.index]] = true;
                if (stats) {
                    ++stats->objects;
                    stats->object_bytes += pieces[v.index].size;
                }
                if (options.progress) options.progress(1, pieces[v.index].size);
            } else if (v.status.code() != Code::transport && failure.is_ok()) {
                failure = std::move(v.status);
            }
        }
    };

    std::vector<std::size_t> finished;
    for (const ChosenPack& c : chosen) {
        PackSplitter splitter(c, queue, finished);
        std::uint64_t received = 0;
        std::size_t chunks = 0;
        Status fetched = transport.fetch_to(layout::pack_path(c.pack->sha256), c.pack->size,
                                            [&](const char* p, std::size_t n) -> Status {
                                                received += n;
                                                SSYNC_RETURN_IF_ERROR(splitter.write(p, n));
                                                // Progress as it goes, and a failing disk
                                                // stops the fetch.
                                                if (++chunks % 64 == 0) take(std::chrono::milliseconds(0));
                                                return failure;
                                            });
        splitter.end();
        if (stats) {
            ++stats->packs;
            stats->bytes += received;
        }
        // A failed fetch (a missing pack, a server gone, a pack shorter than its index says)
        // leaves the pieces it did not deliver to the fallback.
        (void)fetched;
        if (!failure.is_ok()) break;
    }
    while (failure.is_ok() && verdicts_seen < finished.size()) take(std::chrono::milliseconds(100));
    queue.cancel();
    if (!failure.is_ok()) return failure;

    std::vector<Download> rest;
    for (std::size_t i = 0; i < downloads.size(); ++i) {
        if (!delivered[i]) rest.push_back(std::move(downloads[i]));
    }
    return rest;
}

}  // namespace ssync
