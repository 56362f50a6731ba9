// ssync-verifier show: what a signed release contains.
#include <cstdio>

#include "ssync/fs.h"
#include "ssync/report.h"
#include "verbs.h"

namespace ssync::verifier {

namespace {

int run_show(const cli::Args& args) {
    if (!args.positionals().empty()) {
        return cli::report_error(Status(Code::usage, "unexpected argument '" + args.positionals()[0] + "'"));
    }
    auto release = load_release(args);
    if (!release) return cli::report_error(release.status());
    const Manifest& m = release->manifest;
    std::size_t files = 0, dirs = 0, links = 0;
    for (const Entry& e : m.entries) {
        files += e.type == EntryType::file;
        dirs += e.type == EntryType::dir;
        links += e.type == EntryType::symlink;
    }
    bool list = args.has("entries");
    if (args.has("json")) {
        nlohmann::json j = {{"ok", true},
                            {"name", m.name},
                            {"serial", m.serial},
                            {"created", format_rfc3339(m.created)},
                            {"expires", format_rfc3339(m.expires)},
                            {"signer", release->signer.primary_fpr},
                            {"signing_key", release->signer.signing_fpr},
                            {"manifest_sha256", release->manifest_sha256},
                            {"files", files},
                            {"dirs", dirs},
                            {"symlinks", links},
                            {"total_bytes", m.total_file_bytes()}};
        if (list) {
            nlohmann::json entries = nlohmann::json::array();
            for (const Entry& e : m.entries) {
                nlohmann::json x = {{"path", e.path}, {"type", entry_type_name(e.type)},
                                    {"mode", format_mode(e.mode)}, {"user", e.user}, {"group", e.group}};
                if (e.type == EntryType::file) x["size"] = e.size, x["sha256"] = e.sha256;
                if (e.type == EntryType::symlink) x["target"] = e.target;
                entries.push_back(x);
            }
            j["entries"] = entries;
        }
        print_json(j);
        return 0;
    }
    std::printf("name:      %s\nserial:    %llu\ncreated:   %s\nexpires:   %s\nsigner:    %s\n"
                "manifest:  sha256 %s\nentries:   %zu files, %zu dirs, %zu symlinks\nsize:      %s (%llu bytes)\n",
                m.name.c_str(), static_cast<unsigned long long>(m.serial), format_rfc3339(m.created).c_str(),
                format_rfc3339(m.expires).c_str(), release->signer.primary_fpr.c_str(),
                release->manifest_sha256.c_str(), files, dirs, links, human_bytes(m.total_file_bytes()).c_str(),
                static_cast<unsigned long long>(m.total_file_bytes()));
    if (list) {
        for (const Entry& e : m.entries) {
            std::string extra = e.type == EntryType::file ? std::to_string(e.size) + " " + e.sha256
                              : e.type == EntryType::symlink ? "-> " + quote_path(e.target) : "";
            std::printf("%-7s %s %s:%s %s %s\n", entry_type_name(e.type), format_mode(e.mode).c_str(),
                        e.user.c_str(), e.group.c_str(), quote_path(e.path).c_str(), extra.c_str());
        }
    }
    return 0;
}

}  // namespace

cli::Command show_command() {
    auto options = release_options();
    options.push_back({"entries", "", "list every entry too"});
    return {"show", "print a verified release's name, serial, dates, signer and size",
            "(--from PUB | --manifest FILE --signature FILE) --keyring KEYS.asc [--entries]", "",
            options, run_show};
}

}  // namespace ssync::verifier
