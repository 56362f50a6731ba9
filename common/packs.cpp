#include "ssync/packs.h"

#include <charconv>
#include <unordered_set>

#include "ssync/manifest.h"
#include "ssync/publication.h"

namespace ssync {

namespace layout {
constexpr std::string_view kPackSuffix = ".pack";
std::string pack_file_name(std::string_view pack_sha256) {
    return std::string(pack_sha256) + std::string(kPackSuffix);
}
bool is_pack_file_name(std::string_view name) {
    return name.size() == 64 + kPackSuffix.size() && name.substr(64) == kPackSuffix && is_lower_hex(name.substr(0, 64));
}
std::string pack_path(std::string_view pack_sha256) { return std::string(kPacks) + "/" + pack_file_name(pack_sha256); }
std::string pack_index_path(std::uint64_t serial) { return release_dir(serial) + "/" + kPackIndex; }
}  // namespace layout

namespace {

constexpr std::string_view kFormatLine = "ssync-packs 1";

bool is_digest(std::string_view s) { return s.size() == 64 && is_lower_hex(s); }

// Decimal, no sign, no leading zero (but "0" itself), fits 64 bits.
bool parse_number(std::string_view s, std::uint64_t& out) {
    if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
    auto res = std::from_chars(s.data(), s.data() + s.size(), out);
    return res.ec == std::errc() && res.ptr == s.data() + s.size();
}

// Splits a line into exactly `n` fields separated by single spaces.
bool split_fields(std::string_view line, std::size_t n, std::string_view* fields) {
    for (std::size_t i = 0; i < n; ++i) {
        auto space = line.find(' ');
        if (i + 1 < n) {
            if (space == std::string_view::npos) return false;
            fields[i] = line.substr(0, space);
            line.remove_prefix(space + 1);
        } else {
            if (space != std::string_view::npos) return false;
            fields[i] = line;
        }
    }
    return true;
}

}  // namespace

std::string format_pack_index(const PackIndex& index) {
    std::string out(kFormatLine);
    out += '\n';
    for (const Pack& pack : index.packs) {
        out += "pack " + pack.sha256 + " " + std::to_string(pack.size) + " " + std::to_string(pack.objects.size()) + "\n";
        for (const PackedObject& o : pack.objects) out += o.sha256 + " " + std::to_string(o.size) + "\n";
    }
    return out;
}

Result<PackIndex> parse_pack_index(std::string_view text, const std::string& display) {
    std::size_t line_number = 0;
    auto error = [&](const std::string& what) {
        return Status(Code::bad_manifest, display + ": line " + std::to_string(line_number) + ": " + what);
    };
    // The next line without its '\n'; false at the end. A last line without '\n' is an error.
    std::string_view line;
    bool unterminated = false;
    auto next_line = [&]() -> bool {
        if (text.empty()) return false;
        ++line_number;
        auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            unterminated = true;
            return false;
        }
        line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        return true;
    };

    if (!next_line()) {
        return Status(Code::bad_manifest, display + ": " + (unterminated ? "line 1: no newline at its end" : "empty"));
    }
    if (line != kFormatLine) return error("not a pack index (expected \"" + std::string(kFormatLine) + "\")");

    PackIndex index;
    std::unordered_set<std::string_view> seen;
    while (next_line()) {
        std::string_view f[4];
        std::uint64_t size = 0, count = 0;
        if (!split_fields(line, 4, f) || f[0] != "pack") return error("expected \"pack <sha256> <size> <count>\"");
        if (!is_digest(f[1])) return error("pack name is not a SHA-256 digest");
        if (!parse_number(f[2], size) || !parse_number(f[3], count)) return error("bad pack size or count");
        if (count == 0) return error("a pack of no objects");
        Pack pack;
        pack.sha256 = std::string(f[1]);
        pack.size = size;
        std::uint64_t sum = 0;
        for (std::uint64_t i = 0; i < count; ++i) {
            if (!next_line()) break;
            std::string_view o[2];
            PackedObject object;
            if (!split_fields(line, 2, o) || !is_digest(o[0]) || !parse_number(o[1], object.size)) {
                return error("expected \"<sha256> <size>\" (object " + std::to_string(i + 1) + " of " +
                             std::to_string(count) + " in pack " + pack.sha256 + ")");
            }
            if (!seen.insert(o[0]).second) return error("object " + std::string(o[0]) + " listed twice");
            if (object.size > size - sum) return error("objects larger than pack " + pack.sha256 + " says it is");
            sum += object.size;
            object.sha256 = std::string(o[0]);
            pack.objects.push_back(std::move(object));
        }
        if (pack.objects.size() != count) {
            if (unterminated) return error("no newline at its end");
            return error("ends inside pack " + pack.sha256);
        }
        if (sum != size) return error("objects smaller than pack " + pack.sha256 + " says it is");
        index.packs.push_back(std::move(pack));
    }
    if (unterminated) return error("no newline at its end");
    return index;
}

}  // namespace ssync
