#include "testutil.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "ssync/fs.h"

namespace ssync::test {

TempDir::TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/ssync-test-XXXXXX";
    if (!mkdtemp(tmpl.data())) FAIL("mkdtemp failed");
    path_ = tmpl;
}

TempDir::~TempDir() {
    UniqueFd parent(::open("/", O_RDONLY | O_DIRECTORY));
    Status s = remove_tree(system_fs(), parent.get(), path_.substr(1), path_);
    if (!s) fprintf(stderr, "warning: cleaning %s: %s\n", path_.c_str(), s.message().c_str());
}

ProcessResult run(const std::vector<std::string>& argv, const std::string& stdin_data,
                  const std::vector<std::string>& extra_env) {
    ProcessOptions options;
    options.stdin_data = stdin_data;
    options.extra_env = extra_env;
    auto r = run_process(argv, options);
    if (!r) FAIL("cannot run " << argv[0] << ": " << r.status().message());
    return r.value();
}

pid_t spawn(const std::vector<std::string>& argv) {
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    pid_t pid = -1;
    if (posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ) != 0) FAIL("cannot start " << argv[0]);
    return pid;
}

ScopedEnv::ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = ::getenv(name_.c_str())) {
        had_ = true;
        old_ = old;
    }
    ::setenv(name_.c_str(), value.c_str(), 1);
}

ScopedEnv::~ScopedEnv() {
    if (had_) {
        ::setenv(name_.c_str(), old_.c_str(), 1);
    } else {
        ::unsetenv(name_.c_str());
    }
}

int wait_exit(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) FAIL("waitpid failed");
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void make_dirs(const std::string& path) {
    std::string partial;
    std::stringstream ss(path);
    std::string part;
    if (!path.empty() && path[0] == '/') partial = "/";
    while (std::getline(ss, part, '/')) {
        if (part.empty()) continue;
        partial += part;
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) FAIL("mkdir " << partial);
        partial += "/";
    }
}

void write_file(const std::string& path, const std::string& data, mode_t mode) {
    auto slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) make_dirs(path.substr(0, slash));
    ::unlink(path.c_str());
    std::ofstream f(path, std::ios::binary);
    f << data;
    f.close();
    if (!f) FAIL("cannot write " << path);
    ::chmod(path.c_str(), mode);
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) FAIL("cannot read " << path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

std::string pseudo_random_bytes(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (char& c : s) {
        x = x * 1664525u + 1013904223u;  // a linear congruential generator: cheap, and enough
        c = static_cast<char>(x >> 24);
    }
    return s;
}

}  // namespace ssync::test
