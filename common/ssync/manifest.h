// The manifest: the signed description of a release (docs/manifest.md).
//
// A Manifest is a plain value. parse_manifest() is strict and bounded and is given exactly the
// bytes that were verified; write_manifest() is deterministic, so the same tree and metadata
// always give byte-identical output.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ssync/status.h"

namespace ssync {

enum class EntryType { file, dir, symlink };
const char* entry_type_name(EntryType type);

struct Entry {
    std::string path;  // relative, '/'-separated, checked by check_entry_path()
    EntryType type = EntryType::file;
    std::uint32_t mode = 0;  // permission bits, 07777 at most
    std::uint32_t uid = 0, gid = 0;
    std::string user, group;  // names on the master; empty when the id had none
    std::uint64_t size = 0;   // files only
    std::string sha256;       // files only: 64 lowercase hex digits
    std::string target;       // symlinks only
    std::optional<std::int64_t> mtime;  // seconds since the epoch; optional

    bool operator==(const Entry&) const = default;
};

struct Manifest {
    static constexpr int kVersion = 1;
    std::string name;
    std::uint64_t serial = 0;
    std::int64_t created = 0;  // seconds since the epoch, UTC
    std::int64_t expires = 0;
    std::vector<Entry> entries;  // sorted bytewise by path, unique

    // The entry at `path`, or nullptr. Binary search: entries must be sorted.
    const Entry* find(std::string_view path) const;
    std::uint64_t total_file_bytes() const;
};

struct ManifestLimits {
    std::uint64_t max_bytes = 512ull << 20;  // the largest manifest accepted
};

// Parses manifest bytes. Any deviation from docs/manifest.md is a Code::bad_manifest error whose
// message names the field: "entries[17].path: '..' component".
Result<Manifest> parse_manifest(std::string_view bytes, const ManifestLimits& limits = {});

// Serialises deterministically (fixed key order, one entry per line, UTF-8, '\n' line ends).
// Precondition: the manifest would pass check_manifest().
std::string write_manifest(const Manifest& manifest);

// write_manifest() lays a manifest out as a header ("format" to "expires", a line each) and
// the entries part (from the line `  "entries": [` to the end). A signer re-signing an
// unchanged tree keeps the entries part of its previous manifest and writes a new header:
// the same bytes write_manifest() would give, without building 20,000 entries again.
//
// Where the entries part of bytes in that layout begins; nullopt when there is no such line.
std::optional<std::size_t> find_entries_part(std::string_view bytes);
// `header`'s name, serial and dates written as write_manifest() does, followed by the entries
// part of `bytes` (empty when `bytes` has none). `header.entries` is not read.
std::string rewrite_manifest_header(const Manifest& header, std::string_view bytes);
// Parses the header of bytes in write_manifest()'s layout, as strictly as parse_manifest()
// does; the result has no entries. For reading a publication's own previous manifest cheaply.
Result<Manifest> parse_manifest_header(std::string_view bytes);

// The rules parse_manifest() enforces beyond syntax: name, path safety, order, parents, types.
Status check_manifest(const Manifest& manifest);

// A release name: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with . or - (it names files).
Status check_release_name(std::string_view name);

// The top-level "name" of manifest bytes, read no further than needed (`bytes` may be just the
// beginning of a manifest): nullopt if it is not there or not a valid name. No other check:
// for choosing which state to consult before anything is verified.
std::optional<std::string> peek_manifest_name(std::string_view bytes);

// Whether every character is one of 0-9 a-f (a digest, or a digest's prefix).
bool is_lower_hex(std::string_view s);

// The longest path a manifest may hold, in bytes (Linux's PATH_MAX, with its terminator).
inline constexpr std::size_t kMaxPathBytes = 4096;

// Path rules: not empty, relative, '/'-separated, no empty, "." or ".." component, no NUL, valid
// UTF-8, at most 4096 bytes with components of at most 255, and not below ".ssync" (reserved
// for the manifest kept in a mirror). Returns the reason as a Code::bad_manifest error.
Status check_entry_path(std::string_view path);
bool is_valid_utf8(std::string_view s);

// The parent directory's path ("" for a top-level entry).
std::string_view parent_path(std::string_view path);

// RFC 3339 UTC timestamps, exactly "YYYY-MM-DDTHH:MM:SSZ".
std::string format_rfc3339(std::int64_t seconds);
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

// Mode as the manifest writes it: four octal digits ("0755", "4755").
std::string format_mode(std::uint32_t mode);

// The directory name reserved inside a mirror for its copy of the manifest.
inline constexpr std::string_view kReservedDir = ".ssync";

}  // namespace ssync
