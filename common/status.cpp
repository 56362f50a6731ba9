#include "ssync/status.h"

#include <cstring>
#include <exception>
#include <new>
#include <system_error>

namespace ssync {

int exit_code(Code code) {
    switch (code) {
        case Code::ok: return 0;
        case Code::mismatch: return 1;
        case Code::usage: return 2;
        case Code::untrusted: return 3;
        case Code::bad_manifest: return 4;
        case Code::io: return 5;
        case Code::transport: return 6;
        case Code::not_found: return 6;
        case Code::too_large: return 4;
        case Code::busy: return 7;
        case Code::internal: return 70;
    }
    return 70;
}

const char* code_name(Code code) {
    switch (code) {
        case Code::ok: return "ok";
        case Code::mismatch: return "mismatch";
        case Code::usage: return "usage";
        case Code::untrusted: return "untrusted";
        case Code::bad_manifest: return "bad-manifest";
        case Code::io: return "io";
        case Code::transport: return "transport";
        case Code::not_found: return "not-found";
        case Code::too_large: return "too-large";
        case Code::busy: return "busy";
        case Code::internal: return "internal";
    }
    return "internal";
}

Status Status::with_context(std::string_view context) const {
    if (is_ok()) return *this;
    std::string m(context);
    m += ": ";
    m += message_;
    return Status(code_, std::move(m), os_error_);
}

Status status_from_current_exception() {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        return Status(Code::io, "out of memory");
    } catch (const std::system_error& e) {
        return Status(Code::io, std::string("out of resources: ") + e.what());
    } catch (const std::exception& e) {
        return Status(Code::internal, std::string("unexpected exception: ") + e.what());
    } catch (...) {
        return Status(Code::internal, "unexpected exception");
    }
}

Status errno_status(std::string_view context, int err) {
    std::string m(context);
    m += ": ";
    m += std::strerror(err);
    return Status(Code::io, std::move(m), err);
}

}  // namespace ssync
