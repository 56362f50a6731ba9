#include "ssync/manifest.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>

namespace ssync {

namespace {

Manifest sample() {
    Manifest m;
    m.name = "site";
    m.serial = 7;
    m.created = 1700000000;
    m.expires = 1700600000;
    Entry d;
    d.path = "etc";
    d.type = EntryType::dir;
    d.mode = 0755;
    d.user = "root";
    d.group = "root";
    Entry f;
    f.path = "etc/hosts";
    f.mode = 0644;
    f.user = "root";
    f.group = "root";
    f.size = 3;
    f.sha256 = std::string(64, 'a');
    f.mtime = 1699999999;
    Entry l;
    l.path = "link";
    l.type = EntryType::symlink;
    l.mode = 0777;
    l.target = "etc/hosts";
    l.user = "root";
    l.group = "root";
    m.entries = {d, f, l};
    return m;
}

// Replaces the first occurrence of `from` in the sample's serialisation.
std::string sample_with(const std::string& from, const std::string& to) {
    std::string text = write_manifest(sample());
    auto pos = text.find(from);
    REQUIRE(pos != std::string::npos);
    return text.replace(pos, from.size(), to);
}

std::string error_of(const std::string& text) {
    auto r = parse_manifest(text);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == Code::bad_manifest);
    return r.status().message();
}

}  // namespace

TEST_SUITE("Manifest") {
    TEST_CASE("round trip is byte-identical and deterministic") {
        std::string text = write_manifest(sample());
        auto parsed = parse_manifest(text);
        REQUIRE(parsed.is_ok());
        CHECK(parsed->entries == sample().entries);
        CHECK(parsed->serial == 7);
        CHECK(write_manifest(*parsed) == text);
        CHECK(text.find("\"created\": \"2023-11-14T22:13:20Z\"") != std::string::npos);
        CHECK(text.find("\"mode\": \"0644\"") != std::string::npos);
    }

    // A signer re-signing an unchanged tree keeps the entries part and writes a new header.
    TEST_CASE("a new header on old entries is what write_manifest gives and the header parses alone") {
        Manifest m = sample();
        std::string old_bytes = write_manifest(m);
        Manifest next = m;
        next.serial = 8;
        next.created += 3600;
        next.expires += 3600;
        CHECK(rewrite_manifest_header(next, old_bytes) == write_manifest(next));
        auto at = find_entries_part(old_bytes);
        REQUIRE(at);
        CHECK(old_bytes.substr(*at, 14) == "  \"entries\": [");
        auto header = parse_manifest_header(old_bytes);
        REQUIRE(header.is_ok());
        CHECK(header->name == m.name);
        CHECK(header->serial == 7);
        CHECK(header->expires == m.expires);
        CHECK(header->entries.empty());
        // Line breaks and quotes in strings are escaped: no entry can fake the line the entries
        // part starts on.
        Manifest tricky = m;
        tricky.entries.back().user = "\n  \"entries\": [";
        Manifest tricky_next = tricky;
        tricky_next.serial = 9;
        CHECK(rewrite_manifest_header(tricky_next, write_manifest(tricky)) == write_manifest(tricky_next));
        CHECK(find_entries_part(write_manifest(tricky)) == at);
        // Not in write_manifest's layout: no header to find.
        CHECK(parse_manifest_header(R"({"format": "ssync-manifest", "version": 1, "entries": []})").status().code() ==
              Code::bad_manifest);
        CHECK_FALSE(find_entries_part("{}"));
        CHECK(rewrite_manifest_header(next, "{}").empty());
        // A header that is wrong is said to be wrong, as parse_manifest would.
        std::string bad = old_bytes;
        bad.replace(bad.find("\"serial\": 7"), 11, "\"serial\": \"7\"");
        CHECK(parse_manifest_header(bad).status().message().find("serial") != std::string::npos);
    }

    TEST_CASE("setuid, setgid and sticky bits survive") {
        Manifest m = sample();
        m.entries[1].mode = 04755;
        m.entries[0].mode = 01777;
        auto parsed = parse_manifest(write_manifest(m));
        REQUIRE(parsed.is_ok());
        CHECK(parsed->entries[1].mode == 04755);
        CHECK(parsed->entries[0].mode == 01777);
    }

    TEST_CASE("unknown format or version") {
        CHECK(error_of(sample_with("\"ssync-manifest\"", "\"other\"")).find("format") == 0);
        CHECK(error_of(sample_with("\"version\": 1", "\"version\": 2")).find("version: 2 is not supported") == 0);
    }

    TEST_CASE("duplicate and unsorted paths") {
        Manifest m = sample();
        m.entries.push_back(m.entries.back());
        CHECK(error_of(write_manifest(m)).find("is a duplicate") != std::string::npos);
        m = sample();
        std::swap(m.entries[1], m.entries[2]);
        CHECK(error_of(write_manifest(m)).find("out of order") != std::string::npos);
    }

    TEST_CASE("unsafe paths are refused, naming the entry") {
        for (const char* bad : {"../x", "a/../b", "/abs", "a//b", "./a", "a/.", "", ".ssync/x", ".ssync"}) {
            CAPTURE(bad);
            std::string msg = error_of(sample_with("\"path\": \"link\"", std::string("\"path\": \"") + bad + "\""));
            CHECK(msg.find("entries[2].path") == 0);
        }
        CHECK(error_of(sample_with("\"path\": \"link\"", "\"path\": \"a\\u0000b\"")).find("NUL") != std::string::npos);
    }

    TEST_CASE("a path below a symlink is refused") {
        Manifest m = sample();
        Entry below = m.entries[1];
        below.path = "link/evil";
        m.entries.push_back(below);
        CHECK(error_of(write_manifest(m)).find("is below the symlink \"link\"") != std::string::npos);
    }

    TEST_CASE("a path whose parent is missing or not a directory is refused") {
        Manifest m = sample();
        m.entries.erase(m.entries.begin());
        CHECK(error_of(write_manifest(m)).find("parent \"etc\" is not listed") != std::string::npos);
        m = sample();
        Entry f = m.entries[1];
        f.path = "etc/hosts/x";
        m.entries.insert(m.entries.begin() + 2, f);
        CHECK(error_of(write_manifest(m)).find("is not a dir") != std::string::npos);
    }

    TEST_CASE("missing fields and wrong types name the field") {
        CHECK(error_of(sample_with(", \"sha256\": \"" + std::string(64, 'a') + "\"", "")) ==
              "entries[1]: missing field \"sha256\"");
        CHECK(error_of(sample_with("\"size\": 3", "\"size\": \"3\"")) == "entries[1].size: must be a non-negative integer");
        CHECK(error_of(sample_with("\"size\": 3", "\"size\": -3")) == "entries[1].size: must be a non-negative integer");
        CHECK(error_of(sample_with("\"size\": 3", "\"size\": 3.5")) == "entries[1].size: must be a non-negative integer");
        CHECK(error_of(sample_with("\"mode\": \"0644\"", "\"mode\": 420")) == "entries[1].mode: must be a string");
        CHECK(error_of(sample_with("\"mode\": \"0644\"", "\"mode\": \"0999\"")).find("four octal digits") != std::string::npos);
        CHECK(error_of(sample_with(std::string(64, 'a'), std::string(64, 'A'))).find("lowercase hex") != std::string::npos);
        CHECK(error_of(sample_with("\"type\": \"dir\"", "\"type\": \"fifo\"")).find("unknown type") != std::string::npos);
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": \"7\"")) == "manifest.serial: must be a non-negative integer");
        CHECK(error_of(sample_with("\"name\": \"site\",\n", "")) == "manifest: missing field \"name\"");
        CHECK(error_of(sample_with("\"target\": \"etc/hosts\"", "\"target\": \"\"")).find("target") != std::string::npos);
    }

    TEST_CASE("unknown fields, duplicate keys, bad times, trailing garbage") {
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": 7, \"extra\": 1")) == "manifest: unknown field \"extra\"");
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": 7, \"serial\": 8")) == "duplicate field \"serial\"");
        CHECK(error_of(sample_with("\"size\": 3", "\"size\": 3, \"size\": 3")) == "duplicate field \"size\"");
        CHECK(error_of(sample_with("2023-11-14T22:13:20Z", "2023-11-14 22:13:20")).find("RFC 3339") != std::string::npos);
        CHECK(error_of(sample_with("2023-11-14T22:13:20Z", "2023-02-30T22:13:20Z")).find("RFC 3339") != std::string::npos);
        CHECK(error_of(write_manifest(sample()) + "x").find("not valid JSON") == 0);
        CHECK(error_of("[]") == "must be a JSON object");
        CHECK(error_of("").find("not valid JSON") == 0);
    }

    TEST_CASE("field order does not matter, and the first error is the same whatever the order") {
        std::string text =
            "{\"entries\": [{\"type\": \"dir\", \"user\": \"root\", \"group\": \"root\", \"gid\": 0, "
            "\"uid\": 0, \"mode\": \"0755\", \"path\": \"etc\"}], \"expires\": \"2023-11-21T22:13:20Z\", "
            "\"created\": \"2023-11-14T22:13:20Z\", \"serial\": 3, \"name\": \"site\", \"version\": 1, "
            "\"format\": \"ssync-manifest\"}";
        auto parsed = parse_manifest(text);
        REQUIRE(parsed.is_ok());
        CHECK(parsed->serial == 3);
        REQUIRE(parsed->entries.size() == 1);
        CHECK(parsed->entries[0].path == "etc");
        CHECK(parsed->entries[0].mode == 0755);
        // A bad entry is reported only after the top-level fields are known to be right.
        std::string both = text;
        both.replace(both.find("\"version\": 1"), 12, "\"version\": 2");
        both.replace(both.find("\"mode\": \"0755\""), 14, "\"mode\": \"9\"");
        CHECK(error_of(both).find("version: 2 is not supported") == 0);
        // Two bad fields in one entry: the path is checked before the mode, in any order.
        CHECK(error_of(sample_with("\"path\": \"etc/hosts\", \"type\": \"file\", \"mode\": \"0644\"",
                                   "\"mode\": \"x\", \"type\": \"file\", \"path\": \"../x\""))
                  .find("entries[1].path") == 0);
    }

    TEST_CASE("containers where a scalar belongs, and scalars where an entry belongs") {
        CHECK(error_of(sample_with("\"path\": \"link\"", "\"path\": {\"a\": [1, {\"b\": 2}]}")) ==
              "entries[2].path: must be a string");
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": [7]")) ==
              "manifest.serial: must be a non-negative integer");
        std::string text = write_manifest(sample());
        std::string scalar = text;
        scalar.replace(scalar.find("[\n    {"), 7, "[\n    42, {");
        CHECK(error_of(scalar) == "entries[0]: must be an object");
        std::string nested = text;
        nested.replace(nested.find("[\n    {"), 7, "[\n    [{\"path\": 1}], {");
        CHECK(error_of(nested) == "entries[0]: must be an object");
        std::string object = text;
        auto from = object.find("\"entries\": [");
        object = object.substr(0, from) + "\"entries\": {}\n}\n";
        CHECK(error_of(object) == "entries: must be an array");
        CHECK(error_of("42") == "must be a JSON object");
        CHECK(error_of("\"x\"") == "must be a JSON object");
    }

    TEST_CASE("duplicate keys are found in nested values too, and deep nesting is not a crash") {
        CHECK(error_of(sample_with("\"path\": \"link\"", "\"path\": {\"a\": 1, \"a\": 2}")) ==
              "duplicate field \"a\"");
        std::string deep = sample_with("\"serial\": 7", "\"serial\": 7, \"x\": " + std::string(100000, '[') +
                                                            std::string(100000, ']'));
        CHECK(error_of(deep) == "manifest: unknown field \"x\"");
    }

    TEST_CASE("mtime is any 64-bit integer, nothing larger") {
        auto parsed = parse_manifest(sample_with("\"mtime\": 1699999999", "\"mtime\": -5"));
        REQUIRE(parsed.is_ok());
        CHECK(parsed->entries[1].mtime == -5);
        CHECK(error_of(sample_with("\"mtime\": 1699999999", "\"mtime\": 9223372036854775808")) ==
              "entries[1].mtime: 9223372036854775808 is too large");
        CHECK(error_of(sample_with("\"mtime\": 1699999999", "\"mtime\": 1.5")) ==
              "entries[1].mtime: must be an integer");
    }

    TEST_CASE("an object with very many fields is refused before it is tracked") {
        std::string fields;
        for (int i = 0; i < 70; ++i) fields += ", \"f" + std::to_string(i) + "\": 1";
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": 7" + fields)) ==
              "an object with more than 64 fields");
    }

    TEST_CASE("a type's irrelevant fields are refused") {
        CHECK(error_of(sample_with("\"type\": \"dir\"", "\"type\": \"dir\", \"size\": 1")).find("unknown field \"size\"") != std::string::npos);
    }

    TEST_CASE("names, serial and dates") {
        CHECK(error_of(sample_with("\"name\": \"site\"", "\"name\": \"../x\"")).find("name") == 0);
        CHECK(error_of(sample_with("\"serial\": 7", "\"serial\": 0")).find("serial") == 0);
        CHECK(error_of(sample_with("2023-11-21", "2023-11-13")).find("expires") == 0);
    }

    TEST_CASE("check_release_name gives the bare reason") {
        CHECK(check_release_name("site-1.2_x").is_ok());
        CHECK(check_release_name("").message().find("must be 1 to 128") == 0);
        CHECK(check_release_name(".x").message().find("must be 1 to 128") == 0);
        CHECK(check_release_name("-x").message().find("must be 1 to 128") == 0);
        CHECK(check_release_name(std::string(129, 'a')).message().find("must be 1 to 128") == 0);
        CHECK(check_release_name(std::string(128, 'a')).is_ok());
        CHECK(check_release_name("a/b").message() == "character '/' not allowed");
    }

    TEST_CASE("peek_manifest_name reads the name from the beginning of a manifest") {
        std::string text = write_manifest(sample());
        CHECK(peek_manifest_name(text) == std::optional<std::string>("site"));
        // Just the beginning: the entries and the closing brace are missing.
        auto cut = text.find("\"entries\"");
        REQUIRE(cut != std::string::npos);
        CHECK(peek_manifest_name(std::string_view(text).substr(0, cut)) == std::optional<std::string>("site"));
        // Not there before the cut, not a string, not a valid name, or not JSON: nothing.
        CHECK_FALSE(peek_manifest_name(std::string_view(text).substr(0, text.find("\"name\"") + 8)));
        CHECK_FALSE(peek_manifest_name(sample_with("\"name\": \"site\"", "\"name\": 5")));
        CHECK_FALSE(peek_manifest_name(sample_with("\"name\": \"site\"", "\"name\": [\"site\"]")));
        CHECK_FALSE(peek_manifest_name(sample_with("\"name\": \"site\"", "\"name\": \"../x\"")));
        CHECK_FALSE(peek_manifest_name("not json"));
        CHECK_FALSE(peek_manifest_name(""));
        // A "name" inside an entry or a nested object is not the manifest's.
        CHECK_FALSE(peek_manifest_name(R"({"entries": [{"name": "inner"}], "x": {"name": "deep"})"));
        CHECK(peek_manifest_name(R"({"entries": [{"name": "inner"}], "name": "outer")") ==
              std::optional<std::string>("outer"));
    }

    TEST_CASE("the size limit is enforced before parsing") {
        std::string text = write_manifest(sample());
        ManifestLimits limits;
        limits.max_bytes = text.size() - 1;
        auto r = parse_manifest(text, limits);
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.status().message().find("larger than the limit") != std::string::npos);
        limits.max_bytes = text.size();
        CHECK(parse_manifest(text, limits).is_ok());
    }

    TEST_CASE("invalid UTF-8 in the JSON is refused") {
        CHECK(error_of(sample_with("\"path\": \"link\"", "\"path\": \"li\xff\"")).find("not valid JSON") == 0);
    }

    TEST_CASE("strings are escaped and come back unchanged") {
        Manifest m = sample();
        m.entries[2].path = "link \"quoted\"\\\n\t\x01";
        m.entries[2].target = "t\x7f";
        auto parsed = parse_manifest(write_manifest(m));
        REQUIRE(parsed.is_ok());
        CHECK(parsed->entries[2].path == m.entries[2].path);
        CHECK(parsed->entries[2].target == m.entries[2].target);
    }

    TEST_CASE("path rules") {
        CHECK(check_entry_path("a/b/c").is_ok());
        CHECK(check_entry_path("ü/日本").is_ok());
        CHECK(check_entry_path(".ssyncx").is_ok());
        CHECK(check_entry_path("a/.ssync").is_ok());
        CHECK_FALSE(check_entry_path("a/").is_ok());
        CHECK_FALSE(check_entry_path(std::string(256, 'x')).is_ok());
        CHECK_FALSE(check_entry_path("\xc0\xaf").is_ok());  // overlong '/'
        CHECK_FALSE(check_entry_path("\xed\xa0\x80").is_ok());  // surrogate
    }

    TEST_CASE("RFC 3339") {
        CHECK(format_rfc3339(0) == "1970-01-01T00:00:00Z");
        CHECK(parse_rfc3339("2024-02-29T12:00:00Z") == 1709208000);
        CHECK_FALSE(parse_rfc3339("2023-02-29T12:00:00Z"));
        CHECK_FALSE(parse_rfc3339("2024-02-29T12:00:00+01:00"));
        CHECK_FALSE(parse_rfc3339("2024-02-29T24:00:00Z"));
    }

    TEST_CASE("find uses the sorted order") {
        Manifest m = sample();
        REQUIRE(m.find("etc/hosts"));
        CHECK(m.find("etc/hosts")->size == 3);
        CHECK(m.find("etc/host") == nullptr);
        CHECK(m.total_file_bytes() == 3);
    }
}

}  // namespace ssync
