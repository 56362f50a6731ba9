// Packs: small objects concatenated, so that a mirror's first sync fetches them in a few
// requests instead of one request each (docs/publication.md, "Packs").
//
//   PUB/packs/<sha256>.pack            the objects' bytes back to back, nothing else; named by
//                                      the SHA-256 of those bytes; immutable, mode 0444
//   PUB/releases/<serial>/packs        the pack index: which packs hold this release's small
//                                      objects, and where in each (unsigned)
//
// The index is not signed and need not be: a reader cuts a pack by the sizes the index gives,
// then keeps a piece only if its size is the one the *signed* manifest gives for that digest
// and it hashes to that digest. A lying index or pack costs a fallback to fetching the objects
// one by one, never a wrong file.
//
// Index format (text, '\n'-terminated lines, every number decimal without leading zeros):
//
//   ssync-packs 1
//   pack <sha256> <size> <count>       a pack, then its <count> objects in order
//   <sha256> <size>                    an object at the offset of the sizes before it
//
// The sizes of a pack's objects add up to the pack's size; no digest appears twice in an index.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ssync/status.h"

namespace ssync {

namespace layout {
inline constexpr const char* kPacks = "packs";
inline constexpr const char* kPackIndex = "packs";  // in releases/<serial>/
// "<sha256>.pack": a pack's name in packs/
std::string pack_file_name(std::string_view pack_sha256);
// Whether `name` is one pack_file_name() makes (64 lowercase hex digits, ".pack").
bool is_pack_file_name(std::string_view name);
// "packs/<sha256>.pack"
std::string pack_path(std::string_view pack_sha256);
// "releases/42/packs"
std::string pack_index_path(std::uint64_t serial);
}  // namespace layout

// Objects this size or smaller go into packs: above it, one request per object costs little
// next to its transfer (bench: the ~98% of the bench tree's files below 128 KiB are a quarter
// of its bytes).
inline constexpr std::uint64_t kPackMaxObjectSize = 128 * 1024;
// A pack is closed once it holds this much: small enough that a fetch cut short loses little
// and that a mirror needing only part of the packs skips most bytes it has no use for.
inline constexpr std::uint64_t kPackTargetSize = 32ULL << 20;
// The largest index a reader fetches (~80 bytes per object: a million small files fit).
inline constexpr std::uint64_t kMaxPackIndexBytes = 128ULL << 20;

struct PackedObject {
    std::string sha256;
    std::uint64_t size = 0;
};

struct Pack {
    std::string sha256;                  // of the pack's bytes: its name
    std::uint64_t size = 0;              // sum of the objects' sizes
    std::vector<PackedObject> objects;   // in the order their bytes follow each other
};

struct PackIndex {
    std::vector<Pack> packs;
};

// The index's text, as described above.
std::string format_pack_index(const PackIndex& index);

// Parses index text strictly (format line, version, digests of 64 lowercase hex digits,
// numbers, sizes that add up, counts, no digest twice, nothing after the last object).
// Errors: bad_manifest, "DISPLAY: line N: what is wrong".
Result<PackIndex> parse_pack_index(std::string_view text, const std::string& display);

}  // namespace ssync
