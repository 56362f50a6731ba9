// A tree's full contents as a value, to assert "byte-for-byte unchanged" and "old or new".
#pragma once

#include <map>
#include <string>

namespace ssync::test {

struct Node {
    char type;             // 'f' file, 'd' dir, 'l' symlink, '?' other
    unsigned mode;
    std::string content;   // file bytes or symlink target
    bool operator==(const Node&) const = default;
};
using Snapshot = std::map<std::string, Node>;

// Every entry below `root` except the top-level .ssync (relative paths).
Snapshot snapshot(const std::string& root);

}  // namespace ssync::test
