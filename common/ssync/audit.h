// Comparing a tree, or a few files, with a verified manifest.
#pragma once

#include <string>
#include <vector>

#include "ssync/manifest.h"
#include "ssync/status.h"

namespace ssync {

enum class DiffKind { missing, extra, content, type, mode, owner, target };
const char* diff_kind_name(DiffKind kind);

struct Difference {
    std::string path;
    DiffKind kind;
    std::string expected, actual;  // human-readable; empty where they say nothing
};

enum class OwnerCheck { check, ignore };

struct AuditOptions {
    OwnerCheck owners = OwnerCheck::check;
    unsigned threads = 0;   // 0: one per core
    bool progress = false;  // progress on stderr
};

// Every difference between `dir` and the manifest, sorted by path. Below a missing, extra or
// retyped directory only that directory is reported. Owners compare by name where the name
// exists on this host, else by id (docs/manifest.md). The top-level ".ssync" is not part of
// the tree. Errors (io) only when `dir` itself cannot be read.
Result<std::vector<Difference>> audit_tree(const std::string& dir, const Manifest& manifest,
                                           const AuditOptions& options);

struct FileCheck {
    std::string file;          // as the user named it
    std::string path;          // the manifest path it was matched with; empty if none
    bool ok = false;
    std::string problem;       // why not ok
};

// Checks single files (downloads) by size and SHA-256. A file is matched with the manifest
// path equal to its path relative to `base` (when given), else to its path as given, else to
// the one manifest file with the same base name.
std::vector<FileCheck> check_files(const std::vector<std::string>& files, const std::string& base,
                                   const Manifest& manifest);

// The uid and gid an entry should have on this host: the manifest's names if they exist here,
// else its numeric ids.
std::uint32_t expected_uid(const Entry& entry);
std::uint32_t expected_gid(const Entry& entry);

}  // namespace ssync
