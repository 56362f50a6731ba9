#include "ssync/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "ssync/fs.h"

extern char** environ;

namespace ssync {

namespace {

struct Pipe {
    UniqueFd read_end, write_end;
};

Result<Pipe> make_pipe() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno_status("pipe");
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

Result<ProcessResult> run_process(const std::vector<std::string>& argv,
                                  const ProcessOptions& options) {
    if (argv.empty()) return Status(Code::internal, "run_process: empty argument vector");
    SSYNC_ASSIGN_OR_RETURN(Pipe in, make_pipe());
    SSYNC_ASSIGN_OR_RETURN(Pipe out, make_pipe());
    SSYNC_ASSIGN_OR_RETURN(Pipe err, make_pipe());

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in.read_end.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out.write_end.get(), 1);
    if (!options.inherit_stderr) posix_spawn_file_actions_adddup2(&actions, err.write_end.get(), 2);

    // extra_env overrides inherited variables of the same name (a duplicate would leave the
    // child's getenv() returning the inherited value).
    std::vector<std::string> env_strings;
    auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
    for (char** e = environ; *e; ++e) {
        std::string entry = *e;
        bool overridden = false;
        for (const auto& x : options.extra_env) overridden = overridden || name_of(x) == name_of(entry);
        if (!overridden) env_strings.push_back(std::move(entry));
    }
    for (const auto& e : options.extra_env) env_strings.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);

    pid_t pid = -1;
    int rc = posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return errno_status("cannot run " + argv[0], rc);
    in.read_end.reset();
    out.write_end.reset();
    err.write_end.reset();

    // Feed stdin and drain both outputs together so that no pipe can fill up and deadlock.
    ProcessResult result;
    std::size_t written = 0;
    if (options.stdin_data.empty()) in.write_end.reset();
    bool overflow = false;
    signal(SIGPIPE, SIG_IGN);
    while (out.read_end || err.read_end) {
        pollfd fds[3];
        int n = 0;
        int idx_out = -1, idx_err = -1, idx_in = -1;
        if (out.read_end) { idx_out = n; fds[n++] = {out.read_end.get(), POLLIN, 0}; }
        if (err.read_end) { idx_err = n; fds[n++] = {err.read_end.get(), POLLIN, 0}; }
        if (in.write_end) { idx_in = n; fds[n++] = {in.write_end.get(), POLLOUT, 0}; }
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        auto drain = [&](int idx, UniqueFd& fd, std::string& sink) {
            if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
            char buf[65536];
            ssize_t got = read(fd.get(), buf, sizeof buf);
            if (got < 0 && errno == EINTR) return;
            if (got <= 0) { fd.reset(); return; }
            if (sink.size() + static_cast<std::size_t>(got) > options.max_output) {
                overflow = true;
                fd.reset();
                return;
            }
            sink.append(buf, static_cast<std::size_t>(got));
        };
        drain(idx_out, out.read_end, result.out);
        drain(idx_err, err.read_end, result.err);
        if (idx_in >= 0 && (fds[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t put = write(in.write_end.get(), options.stdin_data.data() + written,
                                options.stdin_data.size() - written);
            if (put < 0 && errno != EINTR && errno != EAGAIN) {
                in.write_end.reset();
            } else if (put > 0) {
                written += static_cast<std::size_t>(put);
                if (written == options.stdin_data.size()) in.write_end.reset();
            }
        }
    }
    in.write_end.reset();
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) return errno_status("waitpid " + argv[0]);
    }
    if (WIFEXITED(wstatus)) result.exit_status = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus)) result.exit_status = 128 + WTERMSIG(wstatus);
    if (overflow) return Status(Code::io, argv[0] + ": output larger than " +
                                              std::to_string(options.max_output) + " bytes");
    return result;
}

}  // namespace ssync
