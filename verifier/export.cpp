// ssync-verifier export: the verified manifest in other tools' formats.
#include <algorithm>
#include <cstdio>

#include "verbs.h"

namespace ssync::verifier {

namespace {

// GNU sha256sum's format. A name with a backslash or newline is escaped, and the line then
// starts with a backslash, which is how sha256sum -c expects it.
std::string sha256sums(const Manifest& m) {
    std::string out;
    for (const Entry& e : m.entries) {
        if (e.type != EntryType::file) continue;
        bool escape = e.path.find_first_of("\\\n\r") != std::string::npos;
        std::string name;
        for (char c : e.path) {
            if (c == '\\') name += "\\\\";
            else if (c == '\n') name += "\\n";
            else if (c == '\r') name += "\\r";
            else name += c;
        }
        if (escape) out += '\\';
        out += e.sha256;
        out += "  ";
        out += name;
        out += '\n';
    }
    return out;
}

int run_export(const cli::Args& args) {
    std::string format = args.get("format", "sha256sums");
    if (format != "sha256sums" && format != "manifest") {
        return cli::report_error(Status(Code::usage, "--format: '" + format + "' is not one of sha256sums, manifest"));
    }
    auto release = load_release(args);
    if (!release) return cli::report_error(release.status());
    std::string text = format == "sha256sums" ? sha256sums(release->manifest) : release->manifest_bytes;
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
        return cli::report_error(Status(Code::io, "standard output: write failed"));
    }
    return 0;
}

}  // namespace

cli::Command export_command() {
    auto options = release_options();
    options.erase(std::remove_if(options.begin(), options.end(), [](const cli::OptionSpec& o) { return o.name == "json"; }),
                  options.end());
    options.push_back({"format", "FORMAT", "sha256sums (default: for `sha256sum -c`) or manifest (the verified bytes)"});
    return {"export", "write the verified manifest as a SHA256SUMS file (or verbatim)",
            "(--from PUB | --manifest FILE --signature FILE) --keyring KEYS.asc [--format FORMAT]",
            "Only a manifest whose signature verified is exported. Run `sha256sum -c` in the\n"
            "tree's top directory.",
            options, run_export};
}

}  // namespace ssync::verifier
