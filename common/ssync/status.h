// The one error type of ssync: a code that maps to a documented exit status, and a
// "context: detail" message meant to be printed on one line.
//
// Nothing in the library throws across its API or calls exit(); every fallible function
// returns Status or Result<T>, and the command front ends turn the code into the exit status
// (see exit_code() and docs/exit-codes.md).
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ssync {

enum class Code {
    ok = 0,
    mismatch,        // a tree differs from its manifest (audit, check)
    usage,           // bad command line
    untrusted,       // the signature is bad, unknown, expired or revoked
    bad_manifest,    // malformed, too large, expired, wrong name, rolled back, clock skew
    io,              // the local file system failed us
    transport,       // fetching from a publication failed after retries
    not_found,       // the publication has no such file (exit status as transport)
    too_large,       // an input exceeded its size bound: manifest, signature, latest, keyring
                     // (exit status as bad_manifest; content downloads report transport)
    busy,            // another process holds the lock
    internal,        // a bug or an unexpected library failure
};

// The process exit status for a code. One table, documented in docs/exit-codes.md.
int exit_code(Code code);
// A short name for a code ("untrusted", "io"...) used in JSON output.
const char* code_name(Code code);

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Code code, std::string message, int os_error = 0)
        : code_(code), message_(std::move(message)), os_error_(os_error) {}

    static Status ok() { return {}; }
    bool is_ok() const { return code_ == Code::ok; }
    explicit operator bool() const { return is_ok(); }
    Code code() const { return code_; }
    const std::string& message() const { return message_; }
    // The errno behind an io error made by errno_status() (kept through with_context), else
    // 0: for the few callers that must tell a full disk from other failures.
    int os_error() const { return os_error_; }

    // Returns a copy whose message is "context: message", for adding the file or field name
    // as an error travels upward.
    Status with_context(std::string_view context) const;

private:
    Code code_ = Code::ok;
    std::string message_;
    int os_error_ = 0;
};

// Status from errno: "context: strerror(err)" with code io, and os_error() err.
Status errno_status(std::string_view context, int err = errno);

// The exception being handled, as a Status. The standard library throws when memory runs out
// (std::bad_alloc: io, "out of memory") or a thread cannot be started (std::system_error: io,
// "out of resources: ..."); anything else is a bug (internal). Only inside a catch block: at
// thread entry points and in C callbacks, where an exception would end the process, and at
// the top of each program.
Status status_from_current_exception();

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Status status) : v_(std::move(status)) {}

    bool is_ok() const { return v_.index() == 0; }
    explicit operator bool() const { return is_ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    // The error; Status::ok() when there is a value.
    Status status() const { return is_ok() ? Status::ok() : std::get<1>(v_); }

private:
    std::variant<T, Status> v_;
};

}  // namespace ssync

#define SSYNC_CONCAT_INNER(a, b) a##b
#define SSYNC_CONCAT(a, b) SSYNC_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` (a Status) is an error.
#define SSYNC_RETURN_IF_ERROR(expr)                  \
    do {                                             \
        ::ssync::Status ssync_status_ = (expr);      \
        if (!ssync_status_.is_ok()) return ssync_status_; \
    } while (0)

// `SSYNC_ASSIGN_OR_RETURN(auto x, f())`: declares x from a Result, or returns its error.
#define SSYNC_ASSIGN_OR_RETURN(lhs, expr) \
    SSYNC_ASSIGN_OR_RETURN_IMPL(SSYNC_CONCAT(ssync_result_, __LINE__), lhs, expr)
#define SSYNC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
    auto tmp = (expr);                              \
    if (!tmp.is_ok()) return tmp.status();          \
    lhs = std::move(tmp).value()
