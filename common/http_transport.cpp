#include "ssync/http_transport.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "ssync/download_queue.h"
#include "ssync/manifest.h"

namespace ssync {

namespace {

using Clock = std::chrono::steady_clock;

constexpr long kMaxRedirects = 5;
// Transfers in flight until one has come back over HTTP/2: without multiplexing, each is a
// connection of its own, and a server should not get more than this many from one mirror.
constexpr std::size_t kMaxConnections = 8;
constexpr std::chrono::milliseconds kFirstBackoff{200};
constexpr std::chrono::milliseconds kMaxBackoff{5000};

struct CurlEasyDeleter {
    void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct CurlMultiDeleter {
    void operator()(CURLM* h) const { curl_multi_cleanup(h); }
};
struct CurlUrlDeleter {
    void operator()(CURLU* h) const { curl_url_cleanup(h); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiDeleter>;
using CurlUrl = std::unique_ptr<CURLU, CurlUrlDeleter>;

Status global_init() {
    static std::once_flag once;
    static CURLcode rc = CURLE_OK;
    std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (rc != CURLE_OK)
        return Status(Code::internal, std::string("libcurl: ") + curl_easy_strerror(rc));
    return Status::ok();
}

// What a failed request means for the next one.
enum class Failure {
    retry,      // the network or the server failed: try again, resuming what arrived
    restart,    // the bytes were wrong (bad range, short, digest): try again from scratch
    oversize,   // more than the bound: from scratch in download_all, final for fetch
    permanent,  // retrying cannot help (TLS verification, 404, redirect loop, bad protocol)
    fatal,      // the sink or the local disk failed: its error is returned as it is
};

// libcurl's errors, converted here and nowhere else: a one-line message naming the URL, and
// what the failure means for retrying.
std::pair<Status, Failure> curl_failure(const std::string& url, CURLcode rc, long http_status,
                                        const char* errbuf) {
    std::string reason = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) reason.pop_back();
    std::replace(reason.begin(), reason.end(), '\n', ' ');
    if (rc == CURLE_HTTP_RETURNED_ERROR) {
        if (http_status == 404 || http_status == 410) {
            return {Status(Code::not_found,
                           url + ": not found (HTTP " + std::to_string(http_status) + ")"),
                    Failure::permanent};
        }
        // What a server denies (dot-paths, typically) is not there as far as we can tell.
        if (http_status == 403) {
            return {Status(Code::not_found, url + ": forbidden (HTTP 403)"), Failure::permanent};
        }
        Status s(Code::transport, url + ": HTTP " + std::to_string(http_status));
        // A resume that the server cannot satisfy: what we have is not a prefix of its file.
        return {s, http_status == 416 ? Failure::restart : Failure::retry};
    }
    Status s(Code::transport, url + ": " + reason);
    switch (rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_URL_MALFORMAT:
            return {s, Failure::permanent};
        default:
            return {s, Failure::retry};
    }
}

// libcurl's multi-interface errors: a bug or resource exhaustion, never the server's doing.
Status multi_status(const std::string& url, CURLMcode mc) {
    return Status(Code::internal, url + ": libcurl: " + curl_multi_strerror(mc));
}

std::chrono::milliseconds backoff(int failures) {
    auto delay = kFirstBackoff;
    for (int i = 1; i < failures && delay < kMaxBackoff; ++i) delay *= 2;
    return std::min(delay, kMaxBackoff);
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    }
    return true;
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
    if (s.empty() || s.size() > 19) return false;
    out = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        out = out * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
}

// "bytes FIRST-LAST/TOTAL" (TOTAL may be '*'). False when malformed.
bool parse_content_range(std::string_view v, std::uint64_t& first, std::uint64_t& last,
                         std::uint64_t& total, bool& total_known) {
    if (!starts_with_icase(v, "bytes ")) return false;
    v.remove_prefix(6);
    auto dash = v.find('-'), slash = v.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
        return false;
    if (!parse_u64(v.substr(0, dash), first) ||
        !parse_u64(v.substr(dash + 1, slash - dash - 1), last)) {
        return false;
    }
    std::string_view t = v.substr(slash + 1);
    total_known = t != "*";
    if (total_known && !parse_u64(t, total)) return false;
    return first <= last;
}

// Where the body of one file goes, across the requests that fetch it.
class Receiver {
public:
    virtual ~Receiver() = default;
    // Bytes kept so far: a retry after a dropped connection asks for what follows them.
    virtual std::uint64_t have() const = 0;
    // The body about to arrive starts at `start`: have() when a resume was granted, else 0.
    virtual Status begin(std::uint64_t start) = 0;
    // An error here stops the fetch for good and is returned as it is.
    virtual Status write(const char* data, std::size_t size) = 0;
    // The response ended cleanly; a transport error means the file is wrong (retried from scratch).
    virtual Status finish() { return Status::ok(); }
    // The response ended with an error; a resume may follow.
    virtual void interrupted() {}
    // The fetch failed for good: drop whatever was kept.
    virtual void abandon() {}
    // True when finish() only hands the body over and the file's verdict comes later, from the
    // DownloadQueue.
    virtual bool verdict_later() const { return false; }
};

class StringReceiver : public Receiver {
public:
    std::uint64_t have() const override { return data.size(); }
    Status begin(std::uint64_t start) override {
        data.resize(start);
        return Status::ok();
    }
    Status write(const char* p, std::size_t n) override {
        data.append(p, n);
        return Status::ok();
    }
    std::string data;
};

// Hands the sink every byte once: after a resume refused with a whole body, the part the sink
// already saw is skipped.
class SinkReceiver : public Receiver {
public:
    explicit SinkReceiver(const ChunkSink& sink) : sink_(sink) {}
    std::uint64_t have() const override { return delivered_; }
    Status begin(std::uint64_t start) override {
        position_ = start;
        return Status::ok();
    }
    Status write(const char* p, std::size_t n) override {
        if (position_ < delivered_) {
            std::size_t skip =
                static_cast<std::size_t>(std::min<std::uint64_t>(n, delivered_ - position_));
            p += skip;
            n -= skip;
            position_ += skip;
        }
        if (n == 0) return Status::ok();
        SSYNC_RETURN_IF_ERROR(sink_(p, n));
        delivered_ += n;
        position_ += n;
        return Status::ok();
    }

private:
    const ChunkSink& sink_;
    std::uint64_t delivered_ = 0;
    std::uint64_t position_ = 0;
};

// A Download handed over to the DownloadQueue's worker, which bounds, hashes and writes it: on
// the network thread only bytes are counted and copied.
class QueuedReceiver : public Receiver {
public:
    QueuedReceiver(DownloadQueue& queue, std::size_t index) : queue_(queue), index_(index) {}
    std::uint64_t have() const override { return accepted_; }
    Status begin(std::uint64_t start) override {
        if (start == 0 && accepted_ > 0) {
            queue_.restart(index_);
            accepted_ = 0;
        }
        return Status::ok();
    }
    Status write(const char* p, std::size_t n) override {
        queue_.append(index_, p, n);
        accepted_ += n;
        return Status::ok();
    }
    Status finish() override {
        queue_.finish(index_);
        return Status::ok();
    }
    void interrupted() override { queue_.flush(index_); }
    void abandon() override { queue_.abandon(index_); }
    bool verdict_later() const override { return true; }

private:
    DownloadQueue& queue_;
    std::size_t index_;
    std::uint64_t accepted_ = 0;
};

struct RequestConfig {
    const TransportOptions* options;
    const char* redirect_protocols;
    // libcurl's receive buffer per transfer; 0 keeps its default (16 KiB). A plain-HTTP
    // publication gets a larger one: one recv() per 16 KiB is what the receiving thread spent
    // its time on (the first sync of the bench tree: 78k recvfrom and 110k poll calls with the
    // default, 23k and 55k with 256 KiB). Over TLS a record holds at most 16 KiB, so a larger
    // buffer saves nothing there and would cost 256 KiB for each of the 64 streams in flight.
    long receive_buffer = 0;
};

// Easy handles carrying the options every request shares, kept for the next request: making
// one per request costs its allocations and a score of option calls, 20,000 times in the
// first sync of a large tree.
class HandlePool {
public:
    explicit HandlePool(const RequestConfig& config) : config_(config) {}

    // A handle from the pool, or a new one. Null when libcurl refuses.
    CurlEasy take() {
        if (!idle_.empty()) {
            CurlEasy h = std::move(idle_.back());
            idle_.pop_back();
            return h;
        }
        CurlEasy easy(curl_easy_init());
        CURL* h = easy.get();
        if (!h) return easy;
        const TransportOptions& o = *config_.options;
        bool ok =
            curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, config_.redirect_protocols) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_MAXREDIRS, kMaxRedirects) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o.connect_timeout) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, o.low_speed_limit) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o.low_speed_time) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS)) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_USERAGENT, "ssync/" SSYNC_VERSION_STRING) == CURLE_OK;
        if (ok && !o.ca_file.empty()) ok = curl_easy_setopt(h, CURLOPT_CAINFO, o.ca_file.c_str()) == CURLE_OK;
        if (ok && config_.receive_buffer > 0) {
            ok = curl_easy_setopt(h, CURLOPT_BUFFERSIZE, config_.receive_buffer) == CURLE_OK;
        }
        if (!ok) easy.reset();
        return easy;
    }

    // Back into the pool, once it has left the multi handle.
    void give(CurlEasy h) {
        if (h && idle_.size() < kMaxIdle) idle_.push_back(std::move(h));
    }

private:
    static constexpr std::size_t kMaxIdle = 64;
    const RequestConfig& config_;
    std::vector<CurlEasy> idle_;
};

// One GET in flight: an easy handle and the state its callbacks keep. Added to `multi` on
// construction, removed on destruction.
class Request {
public:
    Request(CURLM* multi, HandlePool& handles, std::size_t job, std::string url,
            std::uint64_t offset, std::uint64_t max_bytes, Receiver& receiver)
        : job_(job),
          multi_(multi),
          handles_(handles),
          url_(std::move(url)),
          offset_(offset),
          max_bytes_(max_bytes),
          receiver_(receiver) {
        error_[0] = '\0';
        easy_ = handles_.take();
        if (!easy_) {
            setup_ = Status(Code::internal, url_ + ": libcurl refused a new handle or an option");
            return;
        }
        CURL* h = easy_.get();
        // What differs from one request to the next; a pooled handle keeps the rest.
        if (offset_ > 0) range_ = std::to_string(offset_) + "-";
        bool ok =
            curl_easy_setopt(h, CURLOPT_URL, url_.c_str()) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_PRIVATE, this) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &Request::on_header) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_HEADERDATA, this) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Request::on_body) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_WRITEDATA, this) == CURLE_OK &&
            curl_easy_setopt(h, CURLOPT_RANGE, offset_ > 0 ? range_.c_str() : nullptr) == CURLE_OK;
        if (!ok) {
            setup_ = Status(Code::internal, url_ + ": libcurl refused an option");
            return;
        }
        if (CURLMcode mc = curl_multi_add_handle(multi_, h); mc != CURLM_OK) {
            setup_ = multi_status(url_, mc);
            return;
        }
        added_ = true;
    }

    ~Request() {
        if (added_ && curl_multi_remove_handle(multi_, easy_.get()) == CURLM_OK) {
            // Its pointers into this request must not outlive it.
            curl_easy_setopt(easy_.get(), CURLOPT_PRIVATE, nullptr);
            curl_easy_setopt(easy_.get(), CURLOPT_ERRORBUFFER, nullptr);
            curl_easy_setopt(easy_.get(), CURLOPT_HEADERDATA, nullptr);
            curl_easy_setopt(easy_.get(), CURLOPT_WRITEDATA, nullptr);
            try {
                handles_.give(std::move(easy_));
            } catch (...) {  // out of memory: the handle is not reused, not leaked either
            }
        }
    }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    // Whether the response came over HTTP/2 (multiplexed with the others).
    bool multiplexed() const {
        long version = 0;
        return curl_easy_getinfo(easy_.get(), CURLINFO_HTTP_VERSION, &version) == CURLE_OK &&
               version == CURL_HTTP_VERSION_2_0;
    }

    // Whether the handle was set up and added; otherwise an internal error.
    const Status& setup() const { return setup_; }
    // The index of the job this request is for.
    std::size_t job() const { return job_; }

    // The outcome once curl reports the transfer done with `rc`: ok when the body was received
    // whole and the receiver accepted it.
    std::pair<Status, Failure> outcome(CURLcode rc) {
        if (rc == CURLE_OK) {
            if (!started_ && !start_body()) return {abort_, failure_};
            Status s = receiver_.finish();
            if (!s) return {s, s.code() == Code::transport ? Failure::restart : Failure::fatal};
            return {Status::ok(), Failure::retry};
        }
        if (!abort_.is_ok()) return {abort_, failure_};
        long status = 0;
        curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status);
        return curl_failure(url_, rc, status, error_);
    }

private:
    // libcurl's callbacks are called from C: an exception must not leave them.
    static size_t on_header(char* data, size_t size, size_t count, void* self) {
        try {
            return static_cast<Request*>(self)->header(data, size * count);
        } catch (...) {
            return static_cast<Request*>(self)->stop(status_from_current_exception(), Failure::fatal);
        }
    }

    static size_t on_body(char* data, size_t size, size_t count, void* self) {
        try {
            return static_cast<Request*>(self)->body(data, size * count);
        } catch (...) {
            return static_cast<Request*>(self)->stop(status_from_current_exception(), Failure::fatal);
        }
    }

    size_t header(char* data, std::size_t n) {
        std::string_view line(data, n);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
        // A new status line starts a new response (after a redirect or an interim 1xx).
        if (starts_with_icase(line, "http/")) content_range_.reset();
        if (starts_with_icase(line, "content-range:")) {
            line.remove_prefix(14);
            while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
                line.remove_prefix(1);
            content_range_ = std::string(line);
        }
        return n;
    }

    size_t body(char* data, std::size_t n) {
        if (!started_ && !start_body()) return CURL_WRITEFUNC_ERROR;
        if (position_ + n > max_bytes_)
            return stop(larger_than(url_, max_bytes_), Failure::oversize);
        Status s = receiver_.write(data, n);
        if (!s) return stop(s, Failure::fatal);
        position_ += n;
        return n;
    }

    static Status larger_than(const std::string& url, std::uint64_t max_bytes) {
        return Status(Code::too_large,
                      url + ": larger than the expected " + std::to_string(max_bytes) + " bytes");
    }

    size_t stop(Status why, Failure failure) {
        abort_ = std::move(why);
        failure_ = failure;
        return CURL_WRITEFUNC_ERROR;
    }

    // At the first byte of the final response's body (or its end, when it has none): checks its
    // status, length and range, and tells the receiver where the body starts.
    bool start_body() {
        started_ = true;
        long status = 0;
        curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status);
        std::uint64_t start = 0;
        if (status == 206) {
            std::uint64_t first = 0, last = 0, total = 0;
            bool total_known = false;
            if (offset_ == 0 || !content_range_ ||
                !parse_content_range(*content_range_, first, last, total, total_known) ||
                first != offset_) {
                stop(Status(Code::transport,
                            url_ + ": HTTP 206 with Content-Range '" + content_range_.value_or("") +
                                "' for a request from byte " + std::to_string(offset_)),
                     Failure::restart);
                return false;
            }
            if ((total_known && total > max_bytes_) || last >= max_bytes_) {
                stop(larger_than(url_, max_bytes_), Failure::oversize);
                return false;
            }
            start = first;
        } else if (status != 200) {
            stop(Status(Code::transport,
                        url_ + ": unexpected HTTP status " + std::to_string(status)),
                 Failure::retry);
            return false;
        }
        curl_off_t length = -1;
        curl_easy_getinfo(easy_.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        if (length > 0 && static_cast<std::uint64_t>(length) > max_bytes_ - start) {
            stop(Status(Code::too_large, url_ + ": Content-Length " + std::to_string(length) +
                                             " is larger than the expected " +
                                             std::to_string(max_bytes_) + " bytes"),
                 Failure::oversize);
            return false;
        }
        Status s = receiver_.begin(start);
        if (!s) {
            stop(s, Failure::fatal);
            return false;
        }
        position_ = start;
        return true;
    }

    std::size_t job_;
    CURLM* multi_;
    HandlePool& handles_;
    CurlEasy easy_;
    bool added_ = false;
    Status setup_;
    std::string url_;
    std::string range_;
    std::uint64_t offset_;
    std::uint64_t max_bytes_;
    Receiver& receiver_;
    char error_[CURL_ERROR_SIZE];
    std::optional<std::string> content_range_;
    bool started_ = false;
    std::uint64_t position_ = 0;
    Status abort_;
    Failure failure_ = Failure::retry;
};

// One file to fetch, across its attempts.
struct Job {
    std::string name;  // for the final error: the publication path
    std::string url;
    std::uint64_t max_bytes = 0;
    Receiver* receiver = nullptr;     // where the body goes; null until the job starts
    std::unique_ptr<Receiver> owned;  // the receiver, when the run created it
    int failures = 0;
    bool verifying = false;  // received whole; the DownloadQueue's verdict is awaited
    // Declared last so that it goes (leaving the multi handle) before the receiver.
    std::unique_ptr<Request> request;
};

struct RunOptions {
    int attempts = 3;
    int parallel = 1;
    bool retry_oversize = false;
    bool name_failures = false;  // start a job's final error with its name
    // Creates job i's receiver when it first starts (for jobs that have none).
    std::function<Result<std::unique_ptr<Receiver>>(std::size_t)> open;
    std::function<void(std::size_t)> on_done;
    // Where the verdicts of receivers with verdict_later() come from.
    DownloadQueue* queue = nullptr;
};

// A job's last failure, saying how often it was tried and, when asked, naming the job first
// (but not twice: DownloadWriter's messages already start with the path).
Status final_failure(const Status& s, const std::string& name, bool with_name, int failures) {
    std::string message = s.message();
    if (with_name && message.rfind(name + ": ", 0) != 0) message = name + ": " + message;
    if (failures > 1) message += " (" + std::to_string(failures) + " attempts)";
    return Status(s.code(), message, s.os_error());
}

class HttpTransport : public Transport {
public:
    HttpTransport(std::string url, std::string base, const TransportOptions& options,
                  CurlMulti multi)
        : url_(std::move(url)),
          base_(std::move(base)),
          options_(options),
          multi_(std::move(multi)) {
        config_.options = &options_;
        bool tls = base_.rfind("https://", 0) == 0;
        config_.redirect_protocols = tls ? "https" : "http,https";
        config_.receive_buffer = tls ? 0 : 256L * 1024;
    }

    Result<std::string> fetch(const std::string& path, std::uint64_t max_bytes) override {
        SSYNC_ASSIGN_OR_RETURN(std::string url, url_for(path));
        StringReceiver receiver;
        std::vector<Job> jobs(1);
        jobs[0].name = path;
        jobs[0].url = std::move(url);
        jobs[0].max_bytes = max_bytes;
        jobs[0].receiver = &receiver;
        SSYNC_RETURN_IF_ERROR(run(jobs, single_options()));
        return std::move(receiver.data);
    }

    Status fetch_to(const std::string& path, std::uint64_t max_bytes,
                    const ChunkSink& sink) override {
        SSYNC_ASSIGN_OR_RETURN(std::string url, url_for(path));
        SinkReceiver receiver(sink);
        std::vector<Job> jobs(1);
        jobs[0].name = path;
        jobs[0].url = std::move(url);
        jobs[0].max_bytes = max_bytes;
        jobs[0].receiver = &receiver;
        return run(jobs, single_options());
    }

    Status download_all(const std::vector<Download>& downloads,
                        const DownloadOptions& options) override {
        std::vector<Job> jobs(downloads.size());
        for (std::size_t i = 0; i < downloads.size(); ++i) {
            SSYNC_ASSIGN_OR_RETURN(jobs[i].url, url_for(downloads[i].path));
            jobs[i].name = downloads[i].path;
            jobs[i].max_bytes = downloads[i].size;
        }
        RunOptions run_options;
        run_options.attempts = std::max(1, options.attempts);
        run_options.parallel = std::max(1, options.max_parallel);
        run_options.retry_oversize = true;
        run_options.name_failures = true;
        // Bodies are hashed and written on the queue's writer threads; buffers for every transfer
        // in flight and some queued.
        DownloadQueue queue(downloads, options, static_cast<std::size_t>(run_options.parallel) + 16);
        run_options.queue = &queue;
        run_options.open = [&](std::size_t i) -> Result<std::unique_ptr<Receiver>> {
            return std::unique_ptr<Receiver>(std::make_unique<QueuedReceiver>(queue, i));
        };
        run_options.on_done = [&](std::size_t i) {
            if (options.progress) options.progress(1, downloads[i].size);
        };
        Status s = run(jobs, run_options);
        // A file named by a signed manifest that the server does not have is the server's fault.
        // Inside a batch of content downloads, a missing or oversized object is the
        // publication failing us: a transport error like any other.
        if (s.code() == Code::not_found || s.code() == Code::too_large) return Status(Code::transport, s.message());
        return s;
    }

    std::string describe() const override { return url_; }

private:
    RunOptions single_options() const {
        RunOptions o;
        o.attempts = std::max(1, options_.attempts);
        return o;
    }

    Result<std::string> url_for(const std::string& path) const {
        // The manifest's path rules, except that a mirror's own ".ssync/" may be read.
        Status s = check_entry_path(path.rfind(".ssync/", 0) == 0 ? std::string_view(path).substr(7)
                                                                  : std::string_view(path));
        if (!s) return s.with_context(base_ + path);
        std::string url = base_;
        static const char kHex[] = "0123456789ABCDEF";
        for (unsigned char c : path) {
            if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
                url += static_cast<char>(c);
            } else {
                url += '%';
                url += kHex[c >> 4];
                url += kHex[c & 15];
            }
        }
        return url;
    }

    // Runs every job through the multi handle, at most options.parallel at once, each retried
    // up to options.attempts times. Stops at the first job that fails for good, dropping what the
    // unfinished jobs kept, and returns its error.
    Status run(std::vector<Job>& jobs, const RunOptions& options) {
        std::deque<std::size_t> ready;
        for (std::size_t i = 0; i < jobs.size(); ++i) ready.push_back(i);
        std::vector<std::pair<Clock::time_point, std::size_t>> waiting;  // retries, not before
        std::size_t in_flight = 0;
        std::size_t verifying = 0;
        std::size_t limit = std::min<std::size_t>(static_cast<std::size_t>(options.parallel), kMaxConnections);
        Status failed;

        auto start = [&](std::size_t i) -> Status {
            Job& job = jobs[i];
            if (!job.receiver) {
                auto r = options.open(i);
                if (!r) return r.status();
                job.owned = std::move(r).value();
                job.receiver = job.owned.get();
            }
            job.request =
                std::make_unique<Request>(multi_.get(), handles_, i, job.url, job.receiver->have(),
                                          job.max_bytes, *job.receiver);
            if (!job.request->setup()) return job.request->setup();
            ++in_flight;
            return Status::ok();
        };

        // What follows a failed attempt: a retry later, or the end of the run.
        auto failed_attempt = [&](std::size_t i, const Status& status, Failure failure) -> Status {
            Job& job = jobs[i];
            if (failure == Failure::fatal) return status;
            ++job.failures;
            bool retriable = failure == Failure::retry || failure == Failure::restart ||
                             (failure == Failure::oversize && options.retry_oversize);
            if (!retriable || job.failures >= options.attempts) {
                return final_failure(status, job.name, options.name_failures, job.failures);
            }
            if (failure != Failure::retry) SSYNC_RETURN_IF_ERROR(job.receiver->begin(0));
            waiting.emplace_back(Clock::now() + backoff(job.failures), i);
            return Status::ok();
        };

        auto done = [&](std::size_t i) {
            Job& job = jobs[i];
            job.receiver = nullptr;
            job.owned.reset();
            if (options.on_done) options.on_done(i);
        };

        // Decides what follows a finished request: done, a verdict to wait for, a retry later,
        // or the end of the run.
        auto finish = [&](std::size_t i, CURLcode rc) -> Status {
            Job& job = jobs[i];
            auto [status, failure] = job.request->outcome(rc);
            if (status && job.request->multiplexed()) limit = static_cast<std::size_t>(options.parallel);
            job.request.reset();
            --in_flight;
            if (status) {
                if (job.receiver->verdict_later()) {
                    job.verifying = true;
                    ++verifying;
                } else {
                    done(i);
                }
                return Status::ok();
            }
            job.receiver->interrupted();
            return failed_attempt(i, status, failure);
        };

        // Applies the DownloadQueue's verdicts, waiting up to `timeout` for the first.
        auto take_verdicts = [&](std::chrono::milliseconds timeout) -> Status {
            if (!options.queue) return Status::ok();
            for (DownloadQueue::Verdict& v : options.queue->take_verdicts(timeout)) {
                Job& job = jobs[v.index];
                if (!job.verifying || (!v.status.is_ok() && v.status.code() != Code::transport)) {
                    return v.status.is_ok() ? Status(Code::internal, job.name + ": unexpected verdict")
                                            : v.status;
                }
                job.verifying = false;
                --verifying;
                if (v.status) {
                    done(v.index);
                } else {
                    // The body arrived whole but was wrong: from scratch, like a bad range.
                    SSYNC_RETURN_IF_ERROR(failed_attempt(v.index, v.status, Failure::restart));
                }
            }
            return Status::ok();
        };

        while (failed.is_ok()) {
            Clock::time_point now = Clock::now();
            for (auto it = waiting.begin(); it != waiting.end();) {
                if (it->first <= now) {
                    ready.push_front(it->second);
                    it = waiting.erase(it);
                } else {
                    ++it;
                }
            }
            while (failed.is_ok() && in_flight < limit && !ready.empty()) {
                failed = start(ready.front());
                ready.pop_front();
            }
            if (!failed) break;
            if (in_flight == 0) {
                if (waiting.empty() && verifying == 0) break;
                if (verifying > 0) {
                    // Nothing for curl to do: wait for verdicts (bounded by the next retry).
                    auto timeout = std::chrono::milliseconds(1000);
                    for (const auto& w : waiting) {
                        timeout = std::min(timeout, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        w.first - Clock::now()));
                    }
                    failed = take_verdicts(std::max(timeout, std::chrono::milliseconds(0)));
                    continue;
                }
            }

            int running = 0;
            if (CURLMcode mc = curl_multi_perform(multi_.get(), &running); mc != CURLM_OK) {
                failed = multi_status(url_, mc);
                break;
            }
            int queued = 0;
            while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
                if (msg->msg != CURLMSG_DONE) continue;
                Request* request = nullptr;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &request);
                if (!request) continue;
                failed = finish(request->job(), msg->data.result);
                if (!failed) break;
            }
            if (!failed) break;
            if (failed = take_verdicts(std::chrono::milliseconds(0)); !failed) break;
            if (in_flight == 0 && ready.empty() && waiting.empty() && verifying == 0) break;
            // With nothing in flight, curl_multi_poll would sleep its whole timeout: no socket
            // wakes it when a verdict arrives. The top of the loop waits for verdicts instead.
            if (in_flight == 0 && verifying > 0) continue;

            int timeout_ms = 1000;
            if (!ready.empty() && in_flight < limit) timeout_ms = 0;
            for (const auto& w : waiting) {
                auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(w.first - Clock::now());
                timeout_ms = std::clamp(static_cast<int>(left.count()) + 1, 0, timeout_ms);
            }
            if (CURLMcode mc = curl_multi_poll(multi_.get(), nullptr, 0, timeout_ms, nullptr);
                mc != CURLM_OK) {
                failed = multi_status(url_, mc);
            }
        }
        if (!failed) {
            for (Job& job : jobs) {
                job.request.reset();
                if (job.receiver) job.receiver->abandon();
            }
            // Files handed over but not verified yet are removed too.
            if (options.queue) options.queue->cancel();
        }
        return failed;
    }

    std::string url_;
    std::string base_;  // url_ ending in '/'
    TransportOptions options_;
    RequestConfig config_{};
    CurlMulti multi_;  // its connection cache outlives each call
    HandlePool handles_{config_};  // after multi_: its handles are cleaned up first
};

}  // namespace

Result<std::unique_ptr<Transport>> open_http_transport(const std::string& url,
                                                       const TransportOptions& options) {
    SSYNC_RETURN_IF_ERROR(global_init());
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
        return Status(Code::usage, url + ": not an http:// or https:// URL");
    }
    if (url.find_first_of("?#") != std::string::npos) {
        return Status(Code::usage, url + ": a publication URL cannot carry a query or fragment");
    }
    CurlUrl parsed(curl_url());
    if (!parsed) return Status(Code::internal, "curl_url failed");
    if (CURLUcode rc = curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK) {
        return Status(Code::usage, url + ": invalid URL (" + curl_url_strerror(rc) + ")");
    }
    if (!options.ca_file.empty() && ::access(options.ca_file.c_str(), R_OK) != 0) {
        return errno_status(options.ca_file);
    }
    CurlMulti multi(curl_multi_init());
    if (!multi) return Status(Code::internal, url + ": curl_multi_init failed");
    if (CURLMcode mc = curl_multi_setopt(multi.get(), CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        mc != CURLM_OK) {
        return multi_status(url, mc);
    }
    std::string base = url;
    if (base.empty() || base.back() != '/') base += '/';
    return std::unique_ptr<Transport>(
        new HttpTransport(url, std::move(base), options, std::move(multi)));
}

}  // namespace ssync
