#include "ssync/manifest.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ssync {

namespace {

using json = nlohmann::json;

Status bad(std::string message) { return Status(Code::bad_manifest, std::move(message)); }

std::string json_string(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    static const char hex[] = "0123456789abcdef";
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
    return out;
}

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Field readers: each names the field in its error.
Status need(const json& obj, const char* key, const std::string& where, const json*& out) {
    auto it = obj.find(key);
    if (it == obj.end()) return bad(where + ": missing field \"" + key + "\"");
    out = &*it;
    return Status::ok();
}

Result<std::string> get_string(const json& obj, const char* key, const std::string& where) {
    const json* v;
    SSYNC_RETURN_IF_ERROR(need(obj, key, where, v));
    if (!v->is_string()) return bad(where + "." + key + ": must be a string");
    return v->get<std::string>();
}

Result<std::uint64_t> get_uint(const json& obj, const char* key, const std::string& where,
                               std::uint64_t max) {
    const json* v;
    SSYNC_RETURN_IF_ERROR(need(obj, key, where, v));
    if (!v->is_number_unsigned()) {
        return bad(where + "." + key + ": must be a non-negative integer");
    }
    std::uint64_t n = v->get<std::uint64_t>();
    if (n > max) return bad(where + "." + key + ": " + std::to_string(n) + " is too large");
    return n;
}

Result<std::int64_t> get_time(const json& obj, const char* key, const std::string& where) {
    SSYNC_ASSIGN_OR_RETURN(std::string text, get_string(obj, key, where));
    auto t = parse_rfc3339(text);
    if (!t) return bad(where + "." + key + ": not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    return *t;
}

Status check_keys(const json& obj, std::initializer_list<const char*> allowed,
                  const std::string& where) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        bool known = std::any_of(allowed.begin(), allowed.end(),
                                 [&](const char* k) { return it.key() == k; });
        if (!known) return bad(where + ": unknown field \"" + it.key() + "\"");
    }
    return Status::ok();
}

Result<Entry> parse_entry(const json& j, const std::string& where) {
    if (!j.is_object()) return bad(where + ": must be an object");
    Entry e;
    SSYNC_ASSIGN_OR_RETURN(e.path, get_string(j, "path", where));
    SSYNC_RETURN_IF_ERROR(check_entry_path(e.path).with_context(where + ".path"));
    SSYNC_ASSIGN_OR_RETURN(std::string type, get_string(j, "type", where));
    if (type == "file") e.type = EntryType::file;
    else if (type == "dir") e.type = EntryType::dir;
    else if (type == "symlink") e.type = EntryType::symlink;
    else return bad(where + ".type: unknown type \"" + type + "\"");

    SSYNC_ASSIGN_OR_RETURN(std::string mode, get_string(j, "mode", where));
    if (mode.size() != 4 || !std::all_of(mode.begin(), mode.end(),
                                         [](char c) { return c >= '0' && c <= '7'; })) {
        return bad(where + ".mode: must be four octal digits such as \"0755\"");
    }
    e.mode = static_cast<std::uint32_t>(std::stoul(mode, nullptr, 8));
    SSYNC_ASSIGN_OR_RETURN(std::uint64_t uid, get_uint(j, "uid", where, 0xfffffffeu));
    SSYNC_ASSIGN_OR_RETURN(std::uint64_t gid, get_uint(j, "gid", where, 0xfffffffeu));
    e.uid = static_cast<std::uint32_t>(uid);
    e.gid = static_cast<std::uint32_t>(gid);
    SSYNC_ASSIGN_OR_RETURN(e.user, get_string(j, "user", where));
    SSYNC_ASSIGN_OR_RETURN(e.group, get_string(j, "group", where));
    for (const std::string* name : {&e.user, &e.group}) {
        if (name->size() > 256 || name->find('\0') != std::string::npos ||
            name->find('\n') != std::string::npos || name->find(':') != std::string::npos) {
            return bad(where + (name == &e.user ? ".user" : ".group") + ": not a valid name");
        }
    }
    if (j.contains("mtime")) {
        const json& m = j["mtime"];
        if (!m.is_number_integer()) return bad(where + ".mtime: must be an integer");
        e.mtime = m.get<std::int64_t>();
    }

    switch (e.type) {
        case EntryType::file: {
            SSYNC_RETURN_IF_ERROR(check_keys(
                j, {"path", "type", "mode", "uid", "gid", "user", "group", "size", "sha256", "mtime"},
                where));
            SSYNC_ASSIGN_OR_RETURN(e.size, get_uint(j, "size", where, (1ull << 62)));
            SSYNC_ASSIGN_OR_RETURN(e.sha256, get_string(j, "sha256", where));
            if (e.sha256.size() != 64 || !is_lower_hex(e.sha256)) {
                return bad(where + ".sha256: must be 64 lowercase hex digits");
            }
            break;
        }
        case EntryType::dir:
            SSYNC_RETURN_IF_ERROR(check_keys(
                j, {"path", "type", "mode", "uid", "gid", "user", "group", "mtime"}, where));
            break;
        case EntryType::symlink: {
            SSYNC_RETURN_IF_ERROR(check_keys(
                j, {"path", "type", "mode", "uid", "gid", "user", "group", "target", "mtime"},
                where));
            SSYNC_ASSIGN_OR_RETURN(e.target, get_string(j, "target", where));
            if (e.target.empty() || e.target.size() > 4095 ||
                e.target.find('\0') != std::string::npos) {
                return bad(where + ".target: must be 1 to 4095 bytes without NUL");
            }
            break;
        }
    }
    return e;
}

// Finds the first key that appears twice in one object. No manifest object has more than ten
// fields, so an object with more than kMaxKeys is refused here rather than tracked.
struct DuplicateKeyFinder : nlohmann::json_sax<json> {
    static constexpr std::size_t kMaxKeys = 64;
    std::vector<std::vector<std::string>> open;  // the keys of each open object, by depth
    std::size_t depth = 0;
    std::string problem;

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool start_object(std::size_t) override {
        if (open.size() <= depth) open.emplace_back();
        open[depth++].clear();
        return true;
    }
    bool end_object() override {
        --depth;
        return true;
    }
    bool key(string_t& k) override {
        auto& keys = open[depth - 1];
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) {
            problem = "duplicate field \"" + k + "\"";
            return false;
        }
        if (keys.size() >= kMaxKeys) {
            problem = "an object with more than " + std::to_string(kMaxKeys) + " fields";
            return false;
        }
        keys.push_back(k);
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }
};

}  // namespace

const char* entry_type_name(EntryType type) {
    switch (type) {
        case EntryType::file: return "file";
        case EntryType::dir: return "dir";
        case EntryType::symlink: return "symlink";
    }
    return "?";
}

const Entry* Manifest::find(std::string_view path) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), path,
                               [](const Entry& e, std::string_view p) { return e.path < p; });
    if (it != entries.end() && it->path == path) return &*it;
    return nullptr;
}

std::uint64_t Manifest::total_file_bytes() const {
    std::uint64_t total = 0;
    for (const auto& e : entries)
        if (e.type == EntryType::file) total += e.size;
    return total;
}

bool is_valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        std::uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > s.size()) return false;
        for (int k = 1; k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        // Overlong forms, surrogates and code points beyond U+10FFFF.
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += len;
    }
    return true;
}

Status check_entry_path(std::string_view path) {
    if (path.empty()) return bad("empty path");
    if (path.size() > 4096) return bad("path longer than 4096 bytes");
    if (path.find('\0') != std::string_view::npos) return bad("NUL byte in path");
    if (path.front() == '/') return bad("absolute path");
    if (!is_valid_utf8(path)) return bad("path is not valid UTF-8");
    std::size_t pos = 0;
    bool first = true;
    while (true) {
        std::size_t slash = path.find('/', pos);
        std::string_view comp =
            path.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
        if (comp.empty()) return bad("empty path component");
        if (comp == ".") return bad("'.' component");
        if (comp == "..") return bad("'..' component");
        if (comp.size() > 255) return bad("path component longer than 255 bytes");
        if (first && comp == kReservedDir) return bad("'.ssync' is reserved for the mirror's manifest");
        first = false;
        if (slash == std::string_view::npos) break;
        pos = slash + 1;
    }
    return Status::ok();
}

std::string_view parent_path(std::string_view path) {
    auto slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

static Status check_name(const std::string& name) {
    if (name.empty() || name.size() > 128 || name[0] == '.' || name[0] == '-') {
        return bad("name: must be 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with . or -");
    }
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return bad("name: character '" + std::string(1, c) + "' not allowed");
    }
    return Status::ok();
}

Status check_manifest(const Manifest& m) {
    SSYNC_RETURN_IF_ERROR(check_name(m.name));
    if (m.serial == 0) return bad("serial: must be at least 1");
    if (m.expires <= m.created) return bad("expires: must be later than created");
    std::unordered_map<std::string_view, EntryType> types;
    types.reserve(m.entries.size());
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        std::string where = "entries[" + std::to_string(i) + "]";
        SSYNC_RETURN_IF_ERROR(check_entry_path(e.path).with_context(where + ".path"));
        if (i > 0 && !(m.entries[i - 1].path < e.path)) {
            return bad(where + ".path: \"" + e.path +
                       (m.entries[i - 1].path == e.path ? "\" is a duplicate" : "\" is out of order"));
        }
        if (e.mode > 07777) return bad(where + ".mode: more than permission bits");
        std::string_view parent = parent_path(e.path);
        if (!parent.empty()) {
            // Walk up: no ancestor may be a symlink (a write there would leave the tree), and
            // the direct parent must be a directory listed before.
            for (std::string_view p = parent; !p.empty(); p = parent_path(p)) {
                auto it = types.find(p);
                if (it != types.end() && it->second == EntryType::symlink) {
                    return bad(where + ".path: \"" + e.path + "\" is below the symlink \"" +
                               std::string(p) + "\"");
                }
            }
            auto it = types.find(parent);
            if (it == types.end()) {
                return bad(where + ".path: parent \"" + std::string(parent) + "\" is not listed");
            }
            if (it->second != EntryType::dir) {
                return bad(where + ".path: parent \"" + std::string(parent) + "\" is not a dir");
            }
        }
        types.emplace(e.path, e.type);
    }
    return Status::ok();
}

Result<Manifest> parse_manifest(std::string_view bytes, const ManifestLimits& limits) {
    if (bytes.size() > limits.max_bytes) {
        return bad("larger than the limit of " + std::to_string(limits.max_bytes) + " bytes");
    }
    // Duplicate keys are an error (nlohmann would keep the last silently). They are found by a
    // SAX pass of their own: json::parse with a callback is quadratic in the length of an
    // array of objects (nlohmann 3.11 rescans the parent at every object end).
    DuplicateKeyFinder duplicates;
    json doc;
    try {
        doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/true,
                          /*ignore_comments=*/false);
        json::sax_parse(bytes.begin(), bytes.end(), &duplicates);
    } catch (const json::exception& e) {
        std::string what = e.what();
        // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> keep the
        // human part only.
        auto close = what.find("] ");
        return bad("not valid JSON: " + (close == std::string::npos ? what : what.substr(close + 2)));
    }
    if (!duplicates.problem.empty()) return bad(duplicates.problem);
    if (!doc.is_object()) return bad("must be a JSON object");
    SSYNC_RETURN_IF_ERROR(check_keys(
        doc, {"format", "version", "name", "serial", "created", "expires", "entries"}, "manifest"));
    SSYNC_ASSIGN_OR_RETURN(std::string format, get_string(doc, "format", "manifest"));
    if (format != "ssync-manifest") return bad("format: \"" + format + "\" is not \"ssync-manifest\"");
    SSYNC_ASSIGN_OR_RETURN(std::uint64_t version, get_uint(doc, "version", "manifest", 1u << 30));
    if (version != Manifest::kVersion) {
        return bad("version: " + std::to_string(version) + " is not supported (this ssync reads 1)");
    }
    Manifest m;
    SSYNC_ASSIGN_OR_RETURN(m.name, get_string(doc, "name", "manifest"));
    SSYNC_ASSIGN_OR_RETURN(m.serial, get_uint(doc, "serial", "manifest", (1ull << 62)));
    SSYNC_ASSIGN_OR_RETURN(m.created, get_time(doc, "created", "manifest"));
    SSYNC_ASSIGN_OR_RETURN(m.expires, get_time(doc, "expires", "manifest"));
    const json* entries;
    SSYNC_RETURN_IF_ERROR(need(doc, "entries", "manifest", entries));
    if (!entries->is_array()) return bad("entries: must be an array");
    m.entries.reserve(entries->size());
    for (std::size_t i = 0; i < entries->size(); ++i) {
        SSYNC_ASSIGN_OR_RETURN(Entry e, parse_entry((*entries)[i], "entries[" + std::to_string(i) + "]"));
        m.entries.push_back(std::move(e));
    }
    SSYNC_RETURN_IF_ERROR(check_manifest(m));
    return m;
}

std::string format_mode(std::uint32_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
    return buf;
}

std::string write_manifest(const Manifest& m) {
    std::string out;
    out.reserve(256 + m.entries.size() * 220);
    out += "{\n";
    out += "  \"format\": \"ssync-manifest\",\n";
    out += "  \"version\": " + std::to_string(Manifest::kVersion) + ",\n";
    out += "  \"name\": " + json_string(m.name) + ",\n";
    out += "  \"serial\": " + std::to_string(m.serial) + ",\n";
    out += "  \"created\": \"" + format_rfc3339(m.created) + "\",\n";
    out += "  \"expires\": \"" + format_rfc3339(m.expires) + "\",\n";
    out += "  \"entries\": [";
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        out += i == 0 ? "\n    {" : ",\n    {";
        out += "\"path\": " + json_string(e.path);
        out += ", \"type\": \"";
        out += entry_type_name(e.type);
        out += "\", \"mode\": \"" + format_mode(e.mode) + "\"";
        out += ", \"uid\": " + std::to_string(e.uid) + ", \"gid\": " + std::to_string(e.gid);
        out += ", \"user\": " + json_string(e.user) + ", \"group\": " + json_string(e.group);
        if (e.type == EntryType::file) {
            out += ", \"size\": " + std::to_string(e.size) + ", \"sha256\": \"" + e.sha256 + "\"";
        } else if (e.type == EntryType::symlink) {
            out += ", \"target\": " + json_string(e.target);
        }
        if (e.mtime) out += ", \"mtime\": " + std::to_string(*e.mtime);
        out += "}";
    }
    out += m.entries.empty() ? "]\n" : "\n  ]\n";
    out += "}\n";
    return out;
}

std::string format_rfc3339(std::int64_t seconds) {
    std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
    // Exactly YYYY-MM-DDTHH:MM:SSZ.
    if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z') {
        return std::nullopt;
    }
    auto num = [&](std::size_t pos, std::size_t len) -> int {
        int v = 0;
        for (std::size_t i = pos; i < pos + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return -1;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    int year = num(0, 4), mon = num(5, 2), day = num(8, 2), hour = num(11, 2), min = num(14, 2),
        sec = num(17, 2);
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60 ||
        hour < 0 || min < 0 || sec < 0) {
        return std::nullopt;
    }
    static const int days_in_month[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int dim = days_in_month[mon - 1] + (mon == 2 && leap ? 1 : 0);
    if (day > dim) return std::nullopt;
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec == 60 ? 59 : sec;
    return static_cast<std::int64_t>(timegm(&tm));
}

}  // namespace ssync
