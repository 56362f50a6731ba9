// Tests for common/packs.cpp: the pack index's text, written and parsed strictly.
#include "ssync/packs.h"

#include <doctest/doctest.h>

#include <string>

namespace ssync::test {
namespace {

std::string digest(char c) { return std::string(64, c); }

PackIndex two_packs() {
    PackIndex index;
    index.packs.push_back(Pack{digest('a'), 7, {{digest('1'), 3}, {digest('2'), 0}, {digest('3'), 4}}});
    index.packs.push_back(Pack{digest('b'), 5, {{digest('4'), 5}}});
    return index;
}

// The error parsing `text` gives, or "" when it parses.
std::string parse_error(const std::string& text) {
    auto r = parse_pack_index(text, "releases/3/packs");
    if (r) return "";
    CHECK(r.status().code() == Code::bad_manifest);
    return r.status().message();
}

TEST_SUITE("pack index") {
    TEST_CASE("the text round-trips and reads as documented") {
        std::string text = format_pack_index(two_packs());
        CHECK(text == "ssync-packs 1\n"
                      "pack " + digest('a') + " 7 3\n" + digest('1') + " 3\n" + digest('2') + " 0\n" + digest('3') +
                          " 4\n"
                          "pack " + digest('b') + " 5 1\n" + digest('4') + " 5\n");
        auto parsed = parse_pack_index(text, "x");
        REQUIRE(parsed.is_ok());
        REQUIRE(parsed->packs.size() == 2);
        CHECK(parsed->packs[0].sha256 == digest('a'));
        CHECK(parsed->packs[0].size == 7);
        REQUIRE(parsed->packs[0].objects.size() == 3);
        CHECK(parsed->packs[0].objects[1].sha256 == digest('2'));
        CHECK(parsed->packs[0].objects[1].size == 0);
        CHECK(parsed->packs[1].objects[0].size == 5);
        CHECK(format_pack_index(*parsed) == text);
        // No packs at all is an index too (a release of large files only).
        auto empty = parse_pack_index("ssync-packs 1\n", "x");
        REQUIRE(empty.is_ok());
        CHECK(empty->packs.empty());
    }

    TEST_CASE("every malformation is refused naming the line") {
        std::string good = format_pack_index(two_packs());
        CHECK(parse_error(good) == "");
        CHECK(parse_error("") == "releases/3/packs: empty");
        CHECK(parse_error("ssync-packs 2\n").find("line 1: not a pack index") != std::string::npos);
        CHECK(parse_error("ssync-packs 1").find("line 1: no newline at its end") != std::string::npos);
        CHECK(parse_error(good.substr(0, good.size() - 1)).find("line 7: no newline at its end") != std::string::npos);

        auto with_line = [&](int line, const std::string& replacement) {
            std::string text = good;
            std::size_t start = 0;
            for (int i = 1; i < line; ++i) start = text.find('\n', start) + 1;
            std::size_t end = text.find('\n', start);
            return text.replace(start, end - start, replacement);
        };
        std::string a = digest('a'), one = digest('1');
        CHECK(parse_error(with_line(2, "pack " + a + " 7")).find("line 2: expected \"pack") != std::string::npos);
        CHECK(parse_error(with_line(2, "pak " + a + " 7 3")).find("line 2: expected \"pack") != std::string::npos);
        CHECK(parse_error(with_line(2, "pack " + digest('A') + " 7 3")).find("line 2: pack name is not") !=
              std::string::npos);
        CHECK(parse_error(with_line(2, "pack " + a + " 07 3")).find("line 2: bad pack size or count") !=
              std::string::npos);
        CHECK(parse_error(with_line(2, "pack " + a + " -7 3")).find("line 2: bad pack size") != std::string::npos);
        CHECK(parse_error(with_line(2, "pack " + a + " 18446744073709551616 3")).find("line 2: bad pack size") !=
              std::string::npos);
        CHECK(parse_error(with_line(2, "pack " + a + " 7  3")).find("line 2:") != std::string::npos);
        CHECK(parse_error("ssync-packs 1\npack " + a + " 0 0\n").find("line 2: a pack of no objects") !=
              std::string::npos);
        CHECK(parse_error(with_line(3, one + " 3 ")).find("line 3: expected \"<sha256> <size>\" (object 1 of 3") !=
              std::string::npos);
        CHECK(parse_error(with_line(3, one.substr(1) + " 3")).find("line 3: expected") != std::string::npos);
        // Sizes that do not add up to the pack's, either way.
        CHECK(parse_error(with_line(3, one + " 4")).find("line 5: objects larger than pack " + a) != std::string::npos);
        CHECK(parse_error(with_line(3, one + " 9")).find("line 3: objects larger than pack " + a) !=
              std::string::npos);
        CHECK(parse_error(with_line(3, one + " 2")).find("line 5: objects smaller than pack " + a) !=
              std::string::npos);
        // A digest twice, in one pack or across packs.
        CHECK(parse_error(with_line(4, one + " 0")).find("line 4: object " + one + " listed twice") !=
              std::string::npos);
        CHECK(parse_error(with_line(7, one + " 5")).find("line 7: object " + one + " listed twice") !=
              std::string::npos);
        // Cut inside a pack, or something after the last pack.
        CHECK(parse_error(good.substr(0, good.find(digest('3')))).find("line 4: ends inside pack " + a) !=
              std::string::npos);
        CHECK(parse_error(good + "\n").find("line 8: expected \"pack") != std::string::npos);
    }

    TEST_CASE("where packs and their index live") {
        CHECK(layout::pack_path(digest('c')) == "packs/" + digest('c') + ".pack");
        CHECK(layout::pack_index_path(42) == "releases/42/packs");
        CHECK(layout::is_pack_file_name(layout::pack_file_name(digest('c'))));
        CHECK_FALSE(layout::is_pack_file_name(digest('c')));
        CHECK_FALSE(layout::is_pack_file_name(digest('C') + ".pack"));
        CHECK_FALSE(layout::is_pack_file_name(digest('c') + ".pack.tmp"));
    }
}

}  // namespace
}  // namespace ssync::test
