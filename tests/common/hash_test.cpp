#include "ssync/hash.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "ssync/fs.h"
#include "testutil.h"

namespace ssync {

TEST_SUITE("Sha256") {
    // FIPS 180-2 / NIST test vectors.
    TEST_CASE("known vectors") {
        CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        Sha256 h;
        std::string chunk(1000, 'a');
        for (int i = 0; i < 1000; ++i) h.update(chunk);
        CHECK(h.finish_hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }

    TEST_CASE("hash_fd streams a file larger than its buffer and hands every byte to the sink") {
        test::TempDir dir;
        std::string data;
        for (int i = 0; i < 700000; ++i) data += static_cast<char>(i * 7);
        test::write_file(dir / "f", data);
        UniqueFd fd(::open((dir / "f").c_str(), O_RDONLY));
        std::string seen;
        auto d = hash_fd(fd.get(), "f", [&](const char* p, std::size_t n) {
            seen.append(p, n);
            return Status::ok();
        });
        REQUIRE(d.is_ok());
        CHECK(d->size == data.size());
        CHECK(d->sha256 == sha256_hex(data));
        CHECK(seen == data);
    }

    TEST_CASE("a sink error stops the read") {
        test::TempDir dir;
        test::write_file(dir / "f", std::string(600000, 'x'));
        UniqueFd fd(::open((dir / "f").c_str(), O_RDONLY));
        int calls = 0;
        auto d = hash_fd(fd.get(), "f", [&](const char*, std::size_t) {
            ++calls;
            return Status(Code::io, "disk full");
        });
        CHECK_FALSE(d.is_ok());
        CHECK(calls == 1);
    }

    TEST_CASE("hash_fd with stop_at reads that many bytes and no read more to find the end") {
        test::TempDir dir;
        test::write_file(dir / "f", "0123456789");
        UniqueFd fd(::open((dir / "f").c_str(), O_RDONLY));
        auto d = hash_fd(fd.get(), "f", {}, 4);
        REQUIRE(d.is_ok());
        CHECK(d->size == 4);
        CHECK(d->sha256 == sha256_hex("0123"));
        CHECK(::lseek(fd.get(), 0, SEEK_CUR) == 4);
        // A file shorter than stop_at ends at its end.
        REQUIRE(::lseek(fd.get(), 0, SEEK_SET) == 0);
        d = hash_fd(fd.get(), "f", {}, 100);
        REQUIRE(d.is_ok());
        CHECK(d->size == 10);
        CHECK(d->sha256 == sha256_hex("0123456789"));

        // Where a further read() would fail (an empty non-blocking pipe whose writer is still
        // open: EAGAIN), stopping at the known size never makes it.
        int p[2];
        REQUIRE(::pipe2(p, O_NONBLOCK) == 0);
        UniqueFd reader(p[0]), writer(p[1]);
        REQUIRE(::write(writer.get(), "abcd", 4) == 4);
        d = hash_fd(reader.get(), "pipe", {}, 4);
        REQUIRE_MESSAGE(d.is_ok(), d.status().message());
        CHECK(d->sha256 == sha256_hex("abcd"));
        REQUIRE(::write(writer.get(), "abcd", 4) == 4);
        CHECK_FALSE(hash_fd(reader.get(), "pipe").is_ok());
    }
}

}  // namespace ssync
