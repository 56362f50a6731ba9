// Real servers for the tests: nginx over HTTPS and plain HTTP with a throwaway CA, and a small
// scripted HTTP server for what nginx will not do (short bodies, trickles, endless streams,
// dropped connections). Everything binds to 127.0.0.1 only and stops by its own process id or
// thread, never by name.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "testutil.h"

namespace ssync::test {

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
int free_port();

// A throwaway certificate authority and a server certificate it issued for 127.0.0.1 and
// localhost, made with the openssl program in `dir`. Test keys only: valid for two days and
// deleted with the directory. Fails the test if openssl fails.
struct TestCertificates {
    std::string ca_file;    // the CA certificate (PEM): what a client trusts
    std::string cert_file;  // the server's certificate (PEM)
    std::string key_file;   // the server's private key (PEM)
};
TestCertificates make_test_certificates(const std::string& dir);

// nginx serving the directory `root` read-only on 127.0.0.1, over HTTPS (HTTP/2 offered) and
// plain HTTP, each on a free port. It runs in the foreground as a child of the test (one
// process, daemon off, master_process off) with its configuration, pid file, logs and temp
// paths in a TempDir of its own, and dies with the test thread that started it
// (PR_SET_PDEATHSIG) should the test crash.
class NginxServer {
public:
    // Starts serving and waits (bounded) until both ports accept connections; fails the test
    // if nginx cannot start. `extra_server_config` is pasted into the server block (locations,
    // redirects...), with @HTTPS_PORT@ and @HTTP_PORT@ replaced by the ports.
    explicit NginxServer(std::string root, std::string extra_server_config = {});
    ~NginxServer();  // stop()
    NginxServer(const NginxServer&) = delete;
    NginxServer& operator=(const NginxServer&) = delete;

    // Starts again after stop(), on the same ports. Does nothing when running.
    void start();
    // SIGTERM to nginx and waits for it (SIGKILL after five seconds). Does nothing when stopped.
    void stop();
    bool running() const { return pid_ > 0; }

    std::string https_url() const;  // "https://127.0.0.1:PORT/"
    std::string http_url() const;   // "http://127.0.0.1:PORT/"
    const std::string& ca_file() const { return certs_.ca_file; }
    // The access log so far: one line per request,
    // '"GET /a HTTP/2.0" 200 1234 range="bytes=5-" conn=7' (conn: nginx's connection number).
    std::string access_log() const;
    std::string error_log() const;

private:
    TempDir dir_;
    std::string root_;
    TestCertificates certs_;
    int https_port_ = 0;
    int http_port_ = 0;
    pid_t pid_ = -1;
};

// A plain-HTTP server on 127.0.0.1 that answers each request as the test scripts it. One
// connection at a time on a thread of its own; each connection carries one request and is
// closed after the handler returns. Bounded in time: a handler's send() and sleep() give up
// once the client has gone or the server is being destroyed.
class ScriptedHttpServer {
public:
    struct Request {
        std::string head;  // request line and headers as received
        std::string path;  // from the request line
        // The value of header `name` (case-insensitive), or "" when absent.
        std::string header(std::string_view name) const;
    };

    // The server side of one connection, handed to the handler.
    class Connection {
    public:
        // Sends all of `data`; false when the client has gone or the server is stopping.
        bool send(std::string_view data);
        // Waits; false when the server is stopping.
        bool sleep(int milliseconds);

    private:
        friend class ScriptedHttpServer;
        Connection(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}
        int fd_;
        const std::atomic<bool>& stopping_;
    };

    // Called on the server's thread with each request and its index (0 for the first).
    using Handler = std::function<void(const Request& request, std::size_t index, Connection& out)>;

    explicit ScriptedHttpServer(Handler handler);
    ~ScriptedHttpServer();  // stops, closing any connection, and joins the thread
    ScriptedHttpServer(const ScriptedHttpServer&) = delete;
    ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;

    std::string url() const;                // "http://127.0.0.1:PORT/"
    std::vector<Request> requests() const;  // every request so far, in order

    // A response head: "HTTP/1.1 <status>", Content-Length when content_length >= 0,
    // "Connection: close", the extra header lines (each ending in "\r\n"), and the blank line.
    static std::string head(int status, std::int64_t content_length,
                            const std::string& extra_headers = {});

    // Handlers for the usual misbehaviours:
    // declares `body` whole but sends only its first `sent` bytes, then closes.
    static Handler truncated(std::string body, std::size_t sent);
    // declares a large body and sends one byte per second.
    static Handler trickle();
    // sends bytes without end (no Content-Length) until the client hangs up.
    static Handler endless();

private:
    void serve();

    Handler handler_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    std::vector<Request> requests_;
    std::thread thread_;
};

}  // namespace ssync::test
