#include "ssync/audit.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "ssync/fs.h"
#include "ssync/hash.h"
#include "ssync/parallel.h"
#include "ssync/report.h"
#include "ssync/scan.h"

namespace ssync {

const char* diff_kind_name(DiffKind kind) {
    switch (kind) {
        case DiffKind::missing: return "missing";
        case DiffKind::extra: return "extra";
        case DiffKind::content: return "content";
        case DiffKind::type: return "type";
        case DiffKind::mode: return "mode";
        case DiffKind::owner: return "owner";
        case DiffKind::target: return "target";
    }
    return "?";
}

namespace {
template <typename Id, typename Lookup>
Id cached_id(const std::string& name, Id fallback, Lookup lookup) {
    if (name.empty()) return fallback;
    static std::mutex mutex;
    static std::unordered_map<std::string, long long> cache;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(name);
    long long id = it != cache.end() ? it->second : (cache[name] = lookup(name));
    return id < 0 ? fallback : static_cast<Id>(id);
}

bool below(const std::string& path, const std::string& dir) {
    return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}
}  // namespace

std::uint32_t expected_uid(const Entry& e) {
    return cached_id<std::uint32_t>(e.user, e.uid, [](const std::string& n) -> long long {
        struct passwd pw, *res = nullptr;
        char buf[4096];
        if (getpwnam_r(n.c_str(), &pw, buf, sizeof buf, &res) == 0 && res) return res->pw_uid;
        return -1;
    });
}

std::uint32_t expected_gid(const Entry& e) {
    return cached_id<std::uint32_t>(e.group, e.gid, [](const std::string& n) -> long long {
        struct group gr, *res = nullptr;
        char buf[4096];
        if (getgrnam_r(n.c_str(), &gr, buf, sizeof buf, &res) == 0 && res) return res->gr_gid;
        return -1;
    });
}

Result<std::vector<Difference>> audit_tree(const std::string& dir, const Manifest& manifest,
                                           const AuditOptions& options) {
    SSYNC_ASSIGN_OR_RETURN(UniqueFd root, open_dir_trusted(dir));
    ScanOptions scan_options;
    scan_options.special = SpecialFiles::include;
    SSYNC_ASSIGN_OR_RETURN(std::vector<ScannedEntry> actual, scan_tree(root.get(), scan_options));

    std::vector<Difference> diffs;
    std::vector<std::pair<const Entry*, const ScannedEntry*>> to_hash;
    std::string skip_below;  // a reported directory whose contents are not reported again
    const auto& want = manifest.entries;
    std::size_t i = 0, j = 0;
    auto skipped = [&](const std::string& path) { return !skip_below.empty() && below(path, skip_below); };
    while (i < want.size() || j < actual.size()) {
        int cmp = i == want.size() ? 1 : j == actual.size() ? -1 : want[i].path.compare(actual[j].entry.path);
        if (cmp < 0) {
            const Entry& e = want[i++];
            if (skipped(e.path)) continue;
            diffs.push_back({e.path, DiffKind::missing, entry_type_name(e.type), ""});
            if (e.type == EntryType::dir) skip_below = e.path;
            continue;
        }
        if (cmp > 0) {
            const ScannedEntry& a = actual[j++];
            if (skipped(a.entry.path)) continue;
            diffs.push_back({a.entry.path, DiffKind::extra, "",
                             a.special ? a.special : entry_type_name(a.entry.type)});
            if (a.entry.type == EntryType::dir) skip_below = a.entry.path;
            continue;
        }
        const Entry& e = want[i++];
        const ScannedEntry& a = actual[j++];
        if (skipped(e.path)) continue;
        if (a.special || a.entry.type != e.type) {
            diffs.push_back({e.path, DiffKind::type, entry_type_name(e.type),
                             a.special ? a.special : entry_type_name(a.entry.type)});
            if (e.type == EntryType::dir || a.entry.type == EntryType::dir) skip_below = e.path;
            continue;
        }
        if (e.type == EntryType::symlink) {
            if (a.entry.target != e.target) {
                diffs.push_back({e.path, DiffKind::target, e.target, a.entry.target});
            }
        } else if (a.entry.mode != e.mode) {
            diffs.push_back({e.path, DiffKind::mode, format_mode(e.mode), format_mode(a.entry.mode)});
        }
        if (options.owners == OwnerCheck::check) {
            std::uint32_t uid = expected_uid(e), gid = expected_gid(e);
            if (a.entry.uid != uid || a.entry.gid != gid) {
                diffs.push_back({e.path, DiffKind::owner,
                                 std::to_string(uid) + ":" + std::to_string(gid) + " (" + e.user + ":" + e.group + ")",
                                 std::to_string(a.entry.uid) + ":" + std::to_string(a.entry.gid)});
            }
        }
        if (e.type == EntryType::file) {
            if (a.entry.size != e.size) {
                diffs.push_back({e.path, DiffKind::content, "size " + std::to_string(e.size),
                                 "size " + std::to_string(a.entry.size)});
            } else {
                to_hash.emplace_back(&e, &a);
            }
        }
    }

    std::uint64_t total = 0;
    for (auto& [e, a] : to_hash) total += e->size;
    Progress progress("auditing", to_hash.size(), total, options.progress);
    std::mutex mutex;
    Status st = parallel_for(to_hash.size(), options.threads, [&](std::size_t k) -> Status {
        const Entry& e = *to_hash[k].first;
        UniqueFd fd(open_beneath(root.get(), e.path, O_RDONLY));
        std::string actual_hash;
        if (!fd) {
            actual_hash = std::string("unreadable: ") + std::strerror(errno);
        } else {
            auto d = hash_fd(fd.get(), e.path);
            actual_hash = d ? d->sha256 : "unreadable: " + d.status().message();
        }
        progress.add(1, e.size);
        if (actual_hash != e.sha256) {
            std::lock_guard<std::mutex> lock(mutex);
            diffs.push_back({e.path, DiffKind::content, "sha256 " + e.sha256,
                             actual_hash.rfind("unreadable", 0) == 0 ? actual_hash : "sha256 " + actual_hash});
        }
        return Status::ok();
    });
    progress.finish();
    SSYNC_RETURN_IF_ERROR(st);
    std::stable_sort(diffs.begin(), diffs.end(),
                     [](const Difference& a, const Difference& b) { return a.path < b.path; });
    return diffs;
}

std::vector<FileCheck> check_files(const std::vector<std::string>& files, const std::string& base,
                                   const Manifest& manifest) {
    std::vector<FileCheck> out;
    for (const std::string& file : files) {
        FileCheck c;
        c.file = file;
        std::string candidate = file;
        if (!base.empty()) {
            // Compared as locations, not as text: "./x/a" is below "x/", and a relative FILE
            // below an absolute --base. Lexically only: no symlink is resolved.
            namespace fs = std::filesystem;
            std::error_code ec;
            fs::path f = fs::absolute(file, ec).lexically_normal();
            fs::path b = fs::absolute(base, ec).lexically_normal();
            if (!ec) {
                fs::path rel = f.lexically_relative(b);
                if (!rel.empty() && *rel.begin() != ".." && rel != ".") candidate = rel.generic_string();
            }
        }
        while (candidate.rfind("./", 0) == 0) candidate = candidate.substr(2);
        const Entry* e = manifest.find(candidate);
        if (!e && base.empty()) {
            std::string name = file.substr(file.rfind('/') + 1);
            const Entry* only = nullptr;
            int matches = 0;
            for (const Entry& x : manifest.entries) {
                if (x.type == EntryType::file &&
                    (x.path == name || (x.path.size() > name.size() &&
                                        x.path.compare(x.path.size() - name.size() - 1, std::string::npos, "/" + name) == 0))) {
                    only = &x;
                    ++matches;
                }
            }
            if (matches == 1) e = only;
            if (matches > 1) {
                c.problem = std::to_string(matches) + " files in the manifest are named " + name +
                            "; use --base to say which";
                out.push_back(c);
                continue;
            }
        }
        if (!e) {
            c.problem = "not in the manifest";
        } else if (e->type != EntryType::file) {
            c.path = e->path;
            c.problem = std::string("the manifest lists it as a ") + entry_type_name(e->type);
        } else {
            c.path = e->path;
            // O_NONBLOCK: a FIFO given as FILE is opened at once, and refused by type below,
            // rather than waited on for a writer.
            UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
            struct stat st;
            if (!fd || ::fstat(fd.get(), &st) != 0) {
                c.problem = std::string("cannot read: ") + std::strerror(errno);
            } else if (!S_ISREG(st.st_mode)) {
                c.problem = std::string("is ") + file_kind_name(st.st_mode) + ", not a regular file";
            } else if (static_cast<std::uint64_t>(st.st_size) != e->size) {
                c.problem = "size " + std::to_string(st.st_size) + ", expected " + std::to_string(e->size);
            } else {
                // Read to the size fstat gave, no further: a file still growing is hashed as
                // it was when opened.
                auto d = hash_fd(fd.get(), file, {}, e->size);
                if (!d) c.problem = d.status().message();
                else if (d->size != e->size)
                    c.problem = "size " + std::to_string(d->size) + ", expected " + std::to_string(e->size);
                else if (d->sha256 != e->sha256)
                    c.problem = "SHA-256 mismatch";
                else
                    c.ok = true;
            }
        }
        out.push_back(c);
    }
    return out;
}

}  // namespace ssync
