#include "ssync/manifest.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

namespace ssync {

namespace {

using json = nlohmann::json;

Status bad(std::string message) { return Status(Code::bad_manifest, std::move(message)); }

void append_json_string(std::string& out, std::string_view s) {
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
}

// One scalar the parser met, kept until its object is complete so that the checks run in a fixed
// order whatever order the fields come in (the first error reported does not depend on it).
struct Value {
    enum Kind : std::uint8_t { absent, string, unsigned_int, signed_int, other } kind = absent;
    std::string text;
    std::uint64_t number = 0;  // unsigned_int; signed_int holds the two's complement
};

// Field readers: each names the field in its error.
Status need(const Value& v, const char* key, const std::string& where) {
    if (v.kind == Value::absent) return bad(where + ": missing field \"" + key + "\"");
    return Status::ok();
}

Result<std::string> get_string(Value& v, const char* key, const std::string& where) {
    SSYNC_RETURN_IF_ERROR(need(v, key, where));
    if (v.kind != Value::string) return bad(where + "." + key + ": must be a string");
    return std::move(v.text);
}

Result<std::uint64_t> get_uint(const Value& v, const char* key, const std::string& where,
                               std::uint64_t max) {
    SSYNC_RETURN_IF_ERROR(need(v, key, where));
    if (v.kind != Value::unsigned_int) return bad(where + "." + key + ": must be a non-negative integer");
    if (v.number > max) return bad(where + "." + key + ": " + std::to_string(v.number) + " is too large");
    return v.number;
}

Result<std::int64_t> get_time(Value& v, const char* key, const std::string& where) {
    SSYNC_ASSIGN_OR_RETURN(std::string text, get_string(v, key, where));
    auto t = parse_rfc3339(text);
    if (!t) return bad(where + "." + key + ": not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
    return *t;
}

// The fields of the manifest object and of an entry, by slot.
constexpr std::array<std::string_view, 7> kTopFields = {"format", "version", "name", "serial",
                                                        "created", "expires", "entries"};
enum TopSlot { t_format, t_version, t_name, t_serial, t_created, t_expires, t_entries };
constexpr std::array<std::string_view, 11> kEntryFields = {
    "path", "type", "mode", "uid", "gid", "user", "group", "size", "sha256", "target", "mtime"};
enum EntrySlot { e_path, e_type, e_mode, e_uid, e_gid, e_user, e_group, e_size, e_sha256, e_target, e_mtime };

template <std::size_t N>
int slot_of(const std::array<std::string_view, N>& fields, std::string_view key) {
    for (std::size_t i = 0; i < N; ++i)
        if (fields[i] == key) return static_cast<int>(i);
    return -1;
}

// Validates one entry's fields (in a fixed order) into an Entry.
Result<Entry> make_entry(std::array<Value, kEntryFields.size()>& f, std::string_view unknown,
                         const std::string& where) {
    Entry e;
    SSYNC_ASSIGN_OR_RETURN(e.path, get_string(f[e_path], "path", where));
    SSYNC_RETURN_IF_ERROR(check_entry_path(e.path).with_context(where + ".path"));
    SSYNC_ASSIGN_OR_RETURN(std::string type, get_string(f[e_type], "type", where));
    if (type == "file") e.type = EntryType::file;
    else if (type == "dir") e.type = EntryType::dir;
    else if (type == "symlink") e.type = EntryType::symlink;
    else return bad(where + ".type: unknown type \"" + type + "\"");

    SSYNC_ASSIGN_OR_RETURN(std::string mode, get_string(f[e_mode], "mode", where));
    if (mode.size() != 4 || !std::all_of(mode.begin(), mode.end(),
                                         [](char c) { return c >= '0' && c <= '7'; })) {
        return bad(where + ".mode: must be four octal digits such as \"0755\"");
    }
    e.mode = static_cast<std::uint32_t>(std::stoul(mode, nullptr, 8));
    SSYNC_ASSIGN_OR_RETURN(std::uint64_t uid, get_uint(f[e_uid], "uid", where, 0xfffffffeu));
    SSYNC_ASSIGN_OR_RETURN(std::uint64_t gid, get_uint(f[e_gid], "gid", where, 0xfffffffeu));
    e.uid = static_cast<std::uint32_t>(uid);
    e.gid = static_cast<std::uint32_t>(gid);
    SSYNC_ASSIGN_OR_RETURN(e.user, get_string(f[e_user], "user", where));
    SSYNC_ASSIGN_OR_RETURN(e.group, get_string(f[e_group], "group", where));
    for (const std::string* name : {&e.user, &e.group}) {
        if (name->size() > 256 || name->find('\0') != std::string::npos ||
            name->find('\n') != std::string::npos || name->find(':') != std::string::npos) {
            return bad(where + (name == &e.user ? ".user" : ".group") + ": not a valid name");
        }
    }
    if (f[e_mtime].kind != Value::absent) {
        if (f[e_mtime].kind != Value::unsigned_int && f[e_mtime].kind != Value::signed_int) {
            return bad(where + ".mtime: must be an integer");
        }
        e.mtime = static_cast<std::int64_t>(f[e_mtime].number);
        if (f[e_mtime].kind == Value::unsigned_int && f[e_mtime].number > INT64_MAX) {
            return bad(where + ".mtime: " + std::to_string(f[e_mtime].number) + " is too large");
        }
    }

    // The fields each type may have; anything else is an unknown field.
    auto refuse_others = [&](std::initializer_list<EntrySlot> extra) -> Status {
        if (!unknown.empty()) return bad(where + ": unknown field \"" + std::string(unknown) + "\"");
        for (EntrySlot s : {e_size, e_sha256, e_target}) {
            bool allowed = std::find(extra.begin(), extra.end(), s) != extra.end();
            if (!allowed && f[s].kind != Value::absent) {
                return bad(where + ": unknown field \"" + std::string(kEntryFields[s]) + "\"");
            }
        }
        return Status::ok();
    };
    switch (e.type) {
        case EntryType::file: {
            SSYNC_RETURN_IF_ERROR(refuse_others({e_size, e_sha256}));
            SSYNC_ASSIGN_OR_RETURN(e.size, get_uint(f[e_size], "size", where, (1ull << 62)));
            SSYNC_ASSIGN_OR_RETURN(e.sha256, get_string(f[e_sha256], "sha256", where));
            if (e.sha256.size() != 64 || !is_lower_hex(e.sha256)) {
                return bad(where + ".sha256: must be 64 lowercase hex digits");
            }
            break;
        }
        case EntryType::dir:
            SSYNC_RETURN_IF_ERROR(refuse_others({}));
            break;
        case EntryType::symlink: {
            SSYNC_RETURN_IF_ERROR(refuse_others({e_target}));
            SSYNC_ASSIGN_OR_RETURN(e.target, get_string(f[e_target], "target", where));
            if (e.target.empty() || e.target.size() > 4095 ||
                e.target.find('\0') != std::string::npos) {
                return bad(where + ".target: must be 1 to 4095 bytes without NUL");
            }
            break;
        }
    }
    return e;
}

// Builds the Manifest while nlohmann's SAX parser reads the bytes: no document tree (a DOM of
// a 20,000-entry manifest is tens of megabytes of small allocations, most of the time a
// re-sign or a sync spent parsing). Errors are kept by priority and reported once the whole
// text has been read, so the result is the same as checking a parsed document in order:
// syntax, then duplicate keys, then the top-level fields, then the first bad entry.
class ManifestReader final : public nlohmann::json_sax<json> {
public:
    static constexpr std::size_t kMaxKeys = 64;  // no manifest object has more than eleven

    explicit ManifestReader(std::size_t size_hint) { manifest_.entries.reserve(size_hint / 256); }

    Result<Manifest> finish(bool parsed) {
        if (!syntax_error_.empty()) return bad("not valid JSON: " + syntax_error_);
        if (!structure_error_.empty()) return bad(structure_error_);
        if (!parsed) return bad("not valid JSON");
        if (!saw_document_object_) return bad("must be a JSON object");
        if (!top_unknown_.empty()) return bad("manifest: unknown field \"" + top_unknown_ + "\"");
        const std::string where = "manifest";
        SSYNC_ASSIGN_OR_RETURN(std::string format, get_string(top_[t_format], "format", where));
        if (format != "ssync-manifest") return bad("format: \"" + format + "\" is not \"ssync-manifest\"");
        SSYNC_ASSIGN_OR_RETURN(std::uint64_t version, get_uint(top_[t_version], "version", where, 1u << 30));
        if (version != Manifest::kVersion) {
            return bad("version: " + std::to_string(version) + " is not supported (this ssync reads 1)");
        }
        SSYNC_ASSIGN_OR_RETURN(manifest_.name, get_string(top_[t_name], "name", where));
        SSYNC_ASSIGN_OR_RETURN(manifest_.serial, get_uint(top_[t_serial], "serial", where, (1ull << 62)));
        SSYNC_ASSIGN_OR_RETURN(manifest_.created, get_time(top_[t_created], "created", where));
        SSYNC_ASSIGN_OR_RETURN(manifest_.expires, get_time(top_[t_expires], "expires", where));
        SSYNC_RETURN_IF_ERROR(need(top_[t_entries], "entries", where));
        if (!entries_is_array_) return bad("entries: must be an array");
        SSYNC_RETURN_IF_ERROR(entry_error_);
        SSYNC_RETURN_IF_ERROR(check_manifest(manifest_));
        return std::move(manifest_);
    }

    bool null() override { return scalar(Value{Value::other, {}, 0}); }
    bool boolean(bool) override { return scalar(Value{Value::other, {}, 0}); }
    bool number_integer(number_integer_t n) override {
        return scalar(Value{Value::signed_int, {}, static_cast<std::uint64_t>(n)});
    }
    bool number_unsigned(number_unsigned_t n) override { return scalar(Value{Value::unsigned_int, {}, n}); }
    bool number_float(number_float_t, const string_t&) override { return scalar(Value{Value::other, {}, 0}); }
    bool string(string_t& s) override {
        Value* v = target();
        if (v) {
            v->kind = Value::string;
            v->text = std::move(s);  // the lexer clears its buffer before the next token
        }
        return element_done();
    }
    bool binary(binary_t&) override { return scalar(Value{Value::other, {}, 0}); }

    bool start_object(std::size_t) override {
        Frame parent = frames_.empty() ? Frame::none : frames_.back();
        Frame frame = Frame::ignored;
        if (parent == Frame::none) {
            saw_document_object_ = true;
            frame = Frame::top;
        } else if (parent == Frame::entries) {
            frame = Frame::entry;
            for (Value& v : fields_) v.kind = Value::absent;
            entry_unknown_.clear();
        } else {
            mark_compound();
        }
        frames_.push_back(frame);
        if (keys_.size() < frames_.size()) keys_.resize(frames_.size());
        keys_[frames_.size() - 1].clear();
        return true;
    }
    bool end_object() override {
        if (frames_.back() == Frame::entry) finish_entry();
        frames_.pop_back();
        return element_done();
    }
    bool start_array(std::size_t) override {
        Frame parent = frames_.empty() ? Frame::none : frames_.back();
        Frame frame = Frame::ignored;
        if (parent == Frame::top && pending_top_ == t_entries) {
            top_[t_entries].kind = Value::other;
            entries_is_array_ = true;
            frame = Frame::entries;
        } else {
            mark_compound();
        }
        frames_.push_back(frame);
        if (keys_.size() < frames_.size()) keys_.resize(frames_.size());
        return true;
    }
    bool end_array() override {
        frames_.pop_back();
        return element_done();
    }

    bool key(string_t& k) override {
        auto& keys = keys_[frames_.size() - 1];
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) {
            structure_error_ = "duplicate field \"" + k + "\"";
            return false;
        }
        if (keys.size() >= kMaxKeys) {
            structure_error_ = "an object with more than " + std::to_string(kMaxKeys) + " fields";
            return false;
        }
        keys.push_back(k);
        if (frames_.back() == Frame::top) {
            pending_top_ = slot_of(kTopFields, k);
            // Reported like a map's first key: the smallest, so the message does not depend on
            // the order of fields.
            if (pending_top_ < 0 && (top_unknown_.empty() || k < top_unknown_)) top_unknown_ = k;
        } else if (frames_.back() == Frame::entry) {
            pending_entry_ = slot_of(kEntryFields, k);
            if (pending_entry_ < 0 && (entry_unknown_.empty() || k < entry_unknown_)) entry_unknown_ = k;
        }
        return true;
    }

    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        std::string what = e.what();
        // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> keep the
        // human part only.
        auto close = what.find("] ");
        syntax_error_ = close == std::string::npos ? what : what.substr(close + 2);
        return false;
    }

private:
    enum class Frame : std::uint8_t { none, top, entries, entry, ignored };

    // Where the current scalar goes, or nullptr when it is not kept.
    Value* target() {
        if (frames_.empty()) return nullptr;
        switch (frames_.back()) {
            case Frame::top: return pending_top_ >= 0 ? &top_[pending_top_] : nullptr;
            case Frame::entry:
                return pending_entry_ >= 0 && entry_error_.is_ok() ? &fields_[pending_entry_] : nullptr;
            default: return nullptr;
        }
    }
    bool scalar(Value value) {
        if (Value* v = target()) *v = std::move(value);
        return element_done();
    }
    // A scalar or a whole container has been read: in the entries array, that is one element.
    bool element_done() {
        if (!frames_.empty() && frames_.back() == Frame::entries) {
            // The element just completed was not an object (objects count in finish_entry).
            if (!last_was_entry_object_) not_an_object();
            last_was_entry_object_ = false;
        }
        return true;
    }
    // An object or array where a top-level or entry field expected a scalar.
    void mark_compound() {
        if (Value* v = target()) v->kind = Value::other;
    }
    void not_an_object() {
        if (entry_error_.is_ok()) {
            entry_error_ = bad("entries[" + std::to_string(entry_index_) + "]: must be an object");
        }
        ++entry_index_;
    }
    void finish_entry() {
        if (entry_error_.is_ok()) {
            auto e = make_entry(fields_, entry_unknown_, "entries[" + std::to_string(entry_index_) + "]");
            if (e) manifest_.entries.push_back(std::move(e).value());
            else entry_error_ = e.status();
        }
        ++entry_index_;
        last_was_entry_object_ = true;
    }

    Manifest manifest_;
    std::vector<Frame> frames_;
    std::vector<std::vector<std::string>> keys_;  // the keys of each open object, by depth
    std::array<Value, kTopFields.size()> top_;
    std::array<Value, kEntryFields.size()> fields_;
    int pending_top_ = -1, pending_entry_ = -1;
    std::string top_unknown_, entry_unknown_;
    bool saw_document_object_ = false, entries_is_array_ = false, last_was_entry_object_ = false;
    std::size_t entry_index_ = 0;
    Status entry_error_ = Status::ok();
    std::string syntax_error_, structure_error_;
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
    if (path.size() > kMaxPathBytes) return bad("path longer than " + std::to_string(kMaxPathBytes) + " bytes");
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

Status check_release_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || name[0] == '.' || name[0] == '-') {
        return bad("must be 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with . or -");
    }
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return bad("character '" + std::string(1, c) + "' not allowed");
    }
    return Status::ok();
}

Status check_manifest(const Manifest& m) {
    if (Status st = check_release_name(m.name); !st.is_ok()) return bad("name: " + st.message());
    if (m.serial == 0) return bad("serial: must be at least 1");
    if (m.expires <= m.created) return bad("expires: must be later than created");
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        auto where = [&] { return "entries[" + std::to_string(i) + "]"; };
        SSYNC_RETURN_IF_ERROR(check_entry_path(e.path).with_context(where() + ".path"));
        if (i > 0 && !(m.entries[i - 1].path < e.path)) {
            return bad(where() + ".path: \"" + e.path +
                       (m.entries[i - 1].path == e.path ? "\" is a duplicate" : "\" is out of order"));
        }
        if (e.mode > 07777) return bad(where() + ".mode: more than permission bits");
        std::string_view parent = parent_path(e.path);
        if (parent.empty()) continue;
        // The parent sorts before its children, so it is among the entries already checked;
        // and since each of those had a directory as its parent, checking the direct parent
        // covers every ancestor: nothing can sit below a symlink or a file.
        auto end = m.entries.begin() + static_cast<std::ptrdiff_t>(i);
        auto it = std::lower_bound(m.entries.begin(), end, parent,
                                   [](const Entry& x, std::string_view p) { return x.path < p; });
        if (it == end || it->path != parent) {
            return bad(where() + ".path: parent \"" + std::string(parent) + "\" is not listed");
        }
        if (it->type == EntryType::symlink) {
            return bad(where() + ".path: \"" + e.path + "\" is below the symlink \"" + std::string(parent) + "\"");
        }
        if (it->type != EntryType::dir) {
            return bad(where() + ".path: parent \"" + std::string(parent) + "\" is not a dir");
        }
    }
    return Status::ok();
}

Result<Manifest> parse_manifest(std::string_view bytes, const ManifestLimits& limits) {
    if (bytes.size() > limits.max_bytes) {
        return bad("larger than the limit of " + std::to_string(limits.max_bytes) + " bytes");
    }
    ManifestReader reader(bytes.size());
    bool parsed = false;
    try {
        parsed = json::sax_parse(bytes.begin(), bytes.end(), &reader, nlohmann::detail::input_format_t::json,
                                 /*strict=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        return bad(std::string("not valid JSON: ") + e.what());
    }
    return reader.finish(parsed);
}

namespace {
// Follows the document only as far as its top-level "name" and stops there.
class NameReader final : public nlohmann::json_sax<json> {
public:
    std::optional<std::string> name;

    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool binary(binary_t&) override { return value(); }
    bool string(string_t& s) override {
        if (depth_ == 1 && at_name_) {
            name = std::move(s);
            return false;  // found: stop reading
        }
        return value();
    }
    bool start_object(std::size_t) override { return open(); }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        at_name_ = depth_ == 1 && k == "name";
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }

private:
    bool value() { return !(depth_ == 1 && at_name_); }  // a name that is not a string: stop
    bool open() {
        if (depth_ == 1 && at_name_) return false;
        ++depth_;
        return true;
    }
    bool close() {
        --depth_;
        return true;
    }
    std::size_t depth_ = 0;
    bool at_name_ = false;
};
}  // namespace

std::optional<std::string> peek_manifest_name(std::string_view bytes) {
    NameReader reader;
    try {
        json::sax_parse(bytes.begin(), bytes.end(), &reader, nlohmann::detail::input_format_t::json,
                        /*strict=*/false, /*ignore_comments=*/false);
    } catch (const json::exception&) {
        return std::nullopt;
    }
    if (!reader.name || !check_release_name(*reader.name).is_ok()) return std::nullopt;
    return reader.name;
}

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string format_mode(std::uint32_t mode) {
    mode &= 07777;
    char buf[4] = {static_cast<char>('0' + ((mode >> 9) & 7)), static_cast<char>('0' + ((mode >> 6) & 7)),
                   static_cast<char>('0' + ((mode >> 3) & 7)), static_cast<char>('0' + (mode & 7))};
    return std::string(buf, 4);
}

namespace {
void append_number(std::string& out, std::uint64_t n) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
}
void append_number(std::string& out, std::int64_t n) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
}
}  // namespace

namespace {
// What write_manifest() puts before the entries part.
void append_manifest_header(std::string& out, const Manifest& m) {
    out += "{\n";
    out += "  \"format\": \"ssync-manifest\",\n";
    out += "  \"version\": ";
    append_number(out, std::uint64_t{Manifest::kVersion});
    out += ",\n  \"name\": ";
    append_json_string(out, m.name);
    out += ",\n  \"serial\": ";
    append_number(out, m.serial);
    out += ",\n  \"created\": \"" + format_rfc3339(m.created) + "\",\n";
    out += "  \"expires\": \"" + format_rfc3339(m.expires) + "\",\n";
}

// The line break before the entries part and its first bytes. JSON strings cannot hold a raw
// line break, so in write_manifest()'s layout these bytes occur only here.
constexpr std::string_view kEntriesLine = "\n  \"entries\": [";
constexpr std::string_view kEntriesPartStart = kEntriesLine.substr(1);
}  // namespace

std::optional<std::size_t> find_entries_part(std::string_view bytes) {
    std::size_t at = bytes.find(kEntriesLine);
    if (at == std::string_view::npos) return std::nullopt;
    return at + 1;
}

std::string rewrite_manifest_header(const Manifest& header, std::string_view bytes) {
    auto at = find_entries_part(bytes);
    if (!at) return {};
    std::string out;
    out.reserve(bytes.size() + 64);
    append_manifest_header(out, header);
    out.append(bytes.substr(*at));
    return out;
}

Result<Manifest> parse_manifest_header(std::string_view bytes) {
    auto at = find_entries_part(bytes);
    if (!at) return bad("no \"entries\" line where ssync writes it");
    std::string header(bytes.substr(0, *at));
    header += kEntriesPartStart;
    header += "]\n}\n";
    return parse_manifest(header);
}

std::string write_manifest(const Manifest& m) {
    // Appends in place: a manifest of 20,000 entries is written on every release and every
    // sync, so no temporary string per field.
    std::string out;
    // Generous: pages of the reservation that are never written are never touched, while
    // growing past it would copy megabytes into fresh memory.
    std::size_t estimate = 256;
    for (const Entry& e : m.entries) estimate += 224 + 2 * (e.path.size() + e.target.size()) + e.user.size() + e.group.size();
    out.reserve(estimate);
    append_manifest_header(out, m);
    out += kEntriesPartStart;
    for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        out += i == 0 ? "\n    {\"path\": " : ",\n    {\"path\": ";
        append_json_string(out, e.path);
        out += ", \"type\": \"";
        out += entry_type_name(e.type);
        out += "\", \"mode\": \"";
        out += format_mode(e.mode);
        out += "\", \"uid\": ";
        append_number(out, std::uint64_t{e.uid});
        out += ", \"gid\": ";
        append_number(out, std::uint64_t{e.gid});
        out += ", \"user\": ";
        append_json_string(out, e.user);
        out += ", \"group\": ";
        append_json_string(out, e.group);
        if (e.type == EntryType::file) {
            out += ", \"size\": ";
            append_number(out, e.size);
            out += ", \"sha256\": \"";
            out += e.sha256;
            out += '"';
        } else if (e.type == EntryType::symlink) {
            out += ", \"target\": ";
            append_json_string(out, e.target);
        }
        if (e.mtime) {
            out += ", \"mtime\": ";
            append_number(out, *e.mtime);
        }
        out += '}';
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
