// The http:// and https:// transport (libcurl), registered in the scheme table of transport.cpp.
//
// TLS peers are always verified (against TransportOptions::ca_file when set, else the system's
// CA store). Redirects are followed a few times and never leave http/https, nor https for http.
// A connection that cannot be made within connect_timeout, or that moves fewer than
// low_speed_limit bytes per second for low_speed_time seconds, fails; every response body is
// bounded by the request's max_bytes. A 404 is Code::not_found; every other failure is
// Code::transport with one line naming the URL and the reason. Transient failures are retried
// with exponential backoff: TransportOptions::attempts tries per fetch, DownloadOptions::attempts
// per file in download_all, which runs up to max_parallel transfers at once (HTTP/2 multiplexed
// where the server offers it) and resumes a dropped transfer with a Range request. Its bodies
// are bounded, hashed and written on a worker thread (DownloadQueue), so that decrypting and
// writing use two cores.
//
// One HttpTransport is used from one thread at a time; it keeps its connections open between
// requests.
#pragma once

#include <memory>
#include <string>

#include "ssync/status.h"
#include "ssync/transport.h"

namespace ssync {

// Opens `url` (http://host[:port]/path or https://...) as the root of a publication. No
// request is made yet. Errors: usage for a URL that does not parse or carries a query or
// fragment; io when options.ca_file cannot be read.
Result<std::unique_ptr<Transport>> open_http_transport(const std::string& url,
                                                       const TransportOptions& options);

}  // namespace ssync
