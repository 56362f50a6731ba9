#include "ssync/pack_writer.h"

#include <doctest/doctest.h>

#include "ssync/hash.h"

namespace ssync {

namespace {

PackedObject object(int n, std::uint64_t size) { return PackedObject{sha256_hex(std::to_string(n)), size}; }

std::vector<std::string> digests_in(const Pack& pack) {
    std::vector<std::string> out;
    for (const PackedObject& o : pack.objects) out.push_back(o.sha256);
    return out;
}

}  // namespace

TEST_SUITE("PackWriter") {
    TEST_CASE("plan_packs: a usable pack is listed whole when it holds any object, the rest cut at the target size") {
        // 300 objects of the largest packed size: 256 of them make kPackTargetSize exactly.
        std::vector<PackedObject> small;
        for (int i = 0; i < 300; ++i) small.push_back(object(i, kPackMaxObjectSize));
        small.push_back(object(5, kPackMaxObjectSize));  // a digest at two paths: packed once
        Pack holds_one{"", 0, {object(1000, 7), object(0, kPackMaxObjectSize)}};
        Pack holds_none{"", 0, {object(2000, 9)}};
        holds_one.sha256 = sha256_hex("holds one");
        holds_one.size = 7 + kPackMaxObjectSize;
        holds_none.sha256 = sha256_hex("holds none");
        holds_none.size = 9;
        PackPlan plan = plan_packs(small, {holds_none, holds_one});
        REQUIRE(plan.index.packs.size() == 3);
        CHECK(plan.first_new == 1);
        CHECK(format_pack_index(PackIndex{{plan.index.packs[0]}}) == format_pack_index(PackIndex{{holds_one}}));
        const Pack& full = plan.index.packs[1];
        const Pack& rest = plan.index.packs[2];
        CHECK(full.sha256.empty());
        CHECK(full.size == kPackTargetSize);
        REQUIRE(full.objects.size() == 256);
        CHECK(full.objects.front().sha256 == object(1, 0).sha256);
        CHECK(full.objects.back().sha256 == object(256, 0).sha256);
        CHECK(rest.objects.size() == 43);
        CHECK(rest.size == 43 * kPackMaxObjectSize);
        CHECK(rest.objects.back().sha256 == object(299, 0).sha256);
    }

    TEST_CASE("plan_packs: nothing small gives an empty index, which is what an index of no packs says") {
        PackPlan plan = plan_packs({}, {Pack{sha256_hex("old"), 3, {object(1, 3)}}});
        CHECK(plan.index.packs.empty());
        CHECK(plan.first_new == 0);
        auto parsed = parse_pack_index(format_pack_index(plan.index), "index");
        REQUIRE(parsed.is_ok());
        CHECK(parsed->packs.empty());
    }

    TEST_CASE("plan_packs: empty objects are packed in their place") {
        PackPlan plan = plan_packs({object(1, 0), object(2, 5), object(3, 0)}, {});
        REQUIRE(plan.index.packs.size() == 1);
        CHECK(digests_in(plan.index.packs[0]) ==
              std::vector<std::string>{object(1, 0).sha256, object(2, 0).sha256, object(3, 0).sha256});
        CHECK(plan.index.packs[0].size == 5);
    }
}

}  // namespace ssync
