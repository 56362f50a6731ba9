#include "servers.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "ssync/fs.h"

extern char** environ;

namespace ssync::test {

namespace {

using Clock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

bool accepts_connections(int port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    sockaddr_in addr = loopback(port);
    return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

// The program's full path, looked up before fork() so that the child only calls execve().
std::string find_program(const std::string& name) {
    std::string path = getenv("PATH") ? getenv("PATH") : "";
    path += ":/usr/sbin:/sbin:/usr/local/sbin";
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t colon = path.find(':', start);
        if (colon == std::string::npos) colon = path.size();
        std::string candidate = path.substr(start, colon - start) + "/" + name;
        if (colon > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = colon + 1;
    }
    return {};
}

void run_openssl(const std::vector<std::string>& argv) {
    ProcessResult r = run(argv);
    REQUIRE_MESSAGE(r.exit_status == 0, "openssl failed: " << r.err);
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(s[i])) !=
            std::tolower(static_cast<unsigned char>(prefix[i]))) {
            return false;
        }
    }
    return true;
}

}  // namespace

int free_port() {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in addr = loopback(0);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    return ntohs(addr.sin_port);
}

TestCertificates make_test_certificates(const std::string& dir) {
    TestCertificates c{dir + "/ca.pem", dir + "/server.pem", dir + "/server.key"};
    const std::string ca_key = dir + "/ca.key", csr = dir + "/server.csr",
                      ext = dir + "/server.ext";
    run_openssl({"openssl",
                 "req",
                 "-x509",
                 "-newkey",
                 "ec",
                 "-pkeyopt",
                 "ec_paramgen_curve:prime256v1",
                 "-nodes",
                 "-keyout",
                 ca_key,
                 "-out",
                 c.ca_file,
                 "-days",
                 "2",
                 "-subj",
                 "/CN=ssync test CA",
                 "-addext",
                 "basicConstraints=critical,CA:TRUE",
                 "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign"});
    run_openssl({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", c.key_file, "-out", csr,
                 "-subj", "/CN=localhost"});
    write_file(ext,
               "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
               "basicConstraints=CA:FALSE\n"
               "extendedKeyUsage=serverAuth\n");
    run_openssl({"openssl", "x509", "-req", "-in", csr, "-CA", c.ca_file, "-CAkey", ca_key,
                 "-CAcreateserial", "-out", c.cert_file, "-days", "2", "-extfile", ext});
    return c;
}

NginxServer::NginxServer(std::string root, std::string extra_server_config)
    : root_(std::move(root)) {
    certs_ = make_test_certificates(dir_.path());
    https_port_ = free_port();
    http_port_ = free_port();
    for (auto [name, port] :
         {std::pair{"@HTTPS_PORT@", https_port_}, std::pair{"@HTTP_PORT@", http_port_}}) {
        for (std::size_t at; (at = extra_server_config.find(name)) != std::string::npos;) {
            extra_server_config.replace(at, std::strlen(name), std::to_string(port));
        }
    }
    const std::string& d = dir_.path();
    std::string conf =
        "daemon off;\n"
        "master_process off;\n"
        "worker_processes 1;\n"
        "pid " +
        d +
        "/nginx.pid;\n"
        "error_log " +
        d +
        "/error.log info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "  log_format ssync '\"$request\" $status $body_bytes_sent range=\"$http_range\" conn=$connection';\n"
        "  access_log " +
        d +
        "/access.log ssync;\n"
        "  client_body_temp_path " +
        d +
        "/body;\n"
        "  proxy_temp_path " +
        d +
        "/proxy;\n"
        "  fastcgi_temp_path " +
        d +
        "/fastcgi;\n"
        "  uwsgi_temp_path " +
        d +
        "/uwsgi;\n"
        "  scgi_temp_path " +
        d +
        "/scgi;\n"
        "  default_type application/octet-stream;\n"
        "  sendfile on;\n"
        "  server {\n"
        "    listen 127.0.0.1:" +
        std::to_string(https_port_) +
        " ssl http2;\n"
        "    listen 127.0.0.1:" +
        std::to_string(http_port_) +
        ";\n"
        "    ssl_certificate " +
        certs_.cert_file +
        ";\n"
        "    ssl_certificate_key " +
        certs_.key_file +
        ";\n"
        "    root " +
        root_ + ";\n" + extra_server_config +
        "\n  }\n"
        "}\n";
    write_file(dir_ / "nginx.conf", conf);
    start();
}

NginxServer::~NginxServer() { stop(); }

void NginxServer::start() {
    if (pid_ > 0) return;
    std::string program = find_program("nginx");
    REQUIRE_MESSAGE(!program.empty(), "nginx is not installed");
    std::vector<std::string> args = {
        program, "-p", dir_.path() + "/", "-c", dir_ / "nginx.conf", "-e", dir_ / "error.log"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    UniqueFd out(
        ::open((dir_ / "nginx.out").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    REQUIRE((out && null_in));

    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Only async-signal-safe calls from here on.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) ::_exit(127);
        ::dup2(null_in.get(), 0);
        ::dup2(out.get(), 1);
        ::dup2(out.get(), 2);
        ::execve(argv[0], argv.data(), environ);
        ::_exit(127);
    }
    pid_ = pid;

    auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            FAIL("nginx exited at start: " << error_log() << read_file(dir_ / "nginx.out"));
        }
        if (accepts_connections(https_port_) && accepts_connections(http_port_)) return;
        if (Clock::now() > deadline) {
            stop();
            FAIL("nginx did not accept connections within 10 s: " << error_log());
        }
        ::usleep(10'000);
    }
}

void NginxServer::stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = Clock::now() + std::chrono::seconds(5);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (Clock::now() > deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            break;
        }
        ::usleep(5'000);
    }
    pid_ = -1;
}

std::string NginxServer::https_url() const {
    return "https://127.0.0.1:" + std::to_string(https_port_) + "/";
}
std::string NginxServer::http_url() const {
    return "http://127.0.0.1:" + std::to_string(http_port_) + "/";
}
std::string NginxServer::access_log() const {
    return exists(dir_ / "access.log") ? read_file(dir_ / "access.log") : "";
}
std::string NginxServer::error_log() const {
    return exists(dir_ / "error.log") ? read_file(dir_ / "error.log") : "";
}

std::string ScriptedHttpServer::Request::header(std::string_view name) const {
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head.size()) {
        std::size_t start = pos + 2;
        std::size_t end = head.find("\r\n", start);
        if (end == std::string::npos) end = head.size();
        std::string_view line(head.data() + start, end - start);
        if (line.size() > name.size() && line[name.size()] == ':' && iequals_prefix(line, name)) {
            line.remove_prefix(name.size() + 1);
            while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
            return std::string(line);
        }
        pos = end;
    }
    return {};
}

bool ScriptedHttpServer::Connection::send(std::string_view data) {
    while (!data.empty()) {
        if (stopping_) return false;
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool ScriptedHttpServer::Connection::sleep(int milliseconds) {
    auto until = Clock::now() + std::chrono::milliseconds(milliseconds);
    while (Clock::now() < until) {
        if (stopping_) return false;
        ::usleep(10'000);
    }
    return !stopping_;
}

ScriptedHttpServer::ScriptedHttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(0);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
}

ScriptedHttpServer::~ScriptedHttpServer() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
}

std::string ScriptedHttpServer::url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/";
}

std::vector<ScriptedHttpServer::Request> ScriptedHttpServer::requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
}

void ScriptedHttpServer::serve() {
    std::size_t index = 0;
    while (!stopping_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        UniqueFd conn(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) continue;

        // The request head, within 64 KiB and five seconds.
        std::string received;
        auto deadline = Clock::now() + std::chrono::seconds(5);
        std::size_t end = std::string::npos;
        while ((end = received.find("\r\n\r\n")) == std::string::npos && received.size() < 65536 &&
               !stopping_ && Clock::now() < deadline) {
            pollfd c{conn.get(), POLLIN, 0};
            if (::poll(&c, 1, 50) <= 0) continue;
            char buf[4096];
            ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
            if (n <= 0) break;
            received.append(buf, static_cast<std::size_t>(n));
        }
        if (end == std::string::npos) continue;

        Request request;
        request.head = received.substr(0, end + 4);
        std::size_t sp1 = received.find(' '), sp2 = received.find(' ', sp1 + 1);
        if (sp1 != std::string::npos && sp2 != std::string::npos && sp2 < end) {
            request.path = received.substr(sp1 + 1, sp2 - sp1 - 1);
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            requests_.push_back(request);
        }
        Connection out(conn.get(), stopping_);
        handler_(request, index++, out);
    }
}

std::string ScriptedHttpServer::head(int status, std::int64_t content_length,
                                     const std::string& extra_headers) {
    std::string h = "HTTP/1.1 " + std::to_string(status) + " Scripted\r\n";
    if (content_length >= 0) h += "Content-Length: " + std::to_string(content_length) + "\r\n";
    return h + "Connection: close\r\n" + extra_headers + "\r\n";
}

ScriptedHttpServer::Handler ScriptedHttpServer::truncated(std::string body, std::size_t sent) {
    return [body = std::move(body), sent](const Request&, std::size_t, Connection& out) {
        if (out.send(head(200, static_cast<std::int64_t>(body.size()))))
            out.send(std::string_view(body).substr(0, sent));
    };
}

ScriptedHttpServer::Handler ScriptedHttpServer::trickle() {
    return [](const Request&, std::size_t, Connection& out) {
        if (!out.send(head(200, 1'000'000))) return;
        // At most a minute; the client is expected to give up long before.
        for (int i = 0; i < 60; ++i) {
            if (!out.send("x") || !out.sleep(1000)) return;
        }
    };
}

ScriptedHttpServer::Handler ScriptedHttpServer::endless() {
    return [](const Request&, std::size_t, Connection& out) {
        if (!out.send(head(200, -1))) return;
        const std::string chunk(64 * 1024, 'e');
        auto deadline = Clock::now() + std::chrono::seconds(30);
        while (Clock::now() < deadline && out.send(chunk)) {
        }
    };
}

}  // namespace ssync::test
