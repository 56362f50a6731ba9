#include "tree_snapshot.h"

#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "ssync/fs.h"
#include "testutil.h"

namespace ssync::test {

namespace {
void walk(const std::string& root, const std::string& rel, Snapshot& out) {
    std::string dir = rel.empty() ? root : root + "/" + rel;
    auto fd = open_dir_trusted(dir);
    REQUIRE(fd.is_ok());
    auto children = list_dir(fd->get(), dir);
    REQUIRE(children.is_ok());
    for (const DirChild& c : *children) {
        if (rel.empty() && c.name == ".ssync") continue;
        std::string path = rel.empty() ? c.name : rel + "/" + c.name;
        std::string full = root + "/" + path;
        struct stat st;
        REQUIRE(::lstat(full.c_str(), &st) == 0);
        Node n{'?', static_cast<unsigned>(st.st_mode & 07777), ""};
        if (S_ISREG(st.st_mode)) {
            n.type = 'f';
            n.content = read_file(full);
        } else if (S_ISLNK(st.st_mode)) {
            n.type = 'l';
            char buf[4096];
            ssize_t len = ::readlink(full.c_str(), buf, sizeof buf);
            REQUIRE(len >= 0);
            n.content.assign(buf, static_cast<std::size_t>(len));
        } else if (S_ISDIR(st.st_mode)) {
            n.type = 'd';
        }
        out[path] = n;
        if (n.type == 'd') walk(root, path, out);
    }
}
}  // namespace

Snapshot snapshot(const std::string& root) {
    Snapshot s;
    walk(root, "", s);
    return s;
}

}  // namespace ssync::test

#include "ssync/manifest.h"
#include "ssync/publication.h"

namespace ssync::test {
std::string sha256_of_entry(const std::string& pub, const std::string& path) {
    auto m = parse_manifest(read_file(pub + "/manifest.json"));
    REQUIRE(m.is_ok());
    const Entry* e = m->find(path);
    REQUIRE(e);
    return e->sha256;
}

std::string object_of_entry(const std::string& pub, const std::string& path) {
    return pub + "/" + layout::object_path(sha256_of_entry(pub, path));
}
}  // namespace ssync::test
