#include "ssync/report.h"

#include <unistd.h>

#include <cstdio>

namespace ssync {

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string human_bytes(std::uint64_t bytes) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

Progress::Progress(std::string verb, std::uint64_t total_items, std::uint64_t total_bytes,
                   bool enabled)
    : verb_(std::move(verb)),
      total_items_(total_items),
      total_bytes_(total_bytes),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::set_totals(std::uint64_t total_items, std::uint64_t total_bytes) {
    total_items_ = total_items;
    total_bytes_ = total_bytes;
}

void Progress::add(std::uint64_t items, std::uint64_t bytes) {
    items_ += items;
    bytes_ += bytes;
    if (enabled_) draw(false);
}

void Progress::draw(bool force) {
    std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    std::uint64_t b = bytes_, tb = total_bytes_;
    double rate = secs > 0 ? static_cast<double>(b) / secs : 0;
    char eta[32] = "";
    if (rate > 0 && tb > b) {
        std::snprintf(eta, sizeof eta, ", ETA %.0fs", static_cast<double>(tb - b) / rate);
    }
    std::fprintf(stderr, "\r\033[K%s %llu/%llu files, %s/%s, %s/s%s", verb_.c_str(),
                 static_cast<unsigned long long>(items_.load()),
                 static_cast<unsigned long long>(total_items_.load()), human_bytes(b).c_str(),
                 human_bytes(tb).c_str(), human_bytes(static_cast<std::uint64_t>(rate)).c_str(), eta);
    std::fflush(stderr);
    drawn_ = true;
}

void Progress::finish() {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (drawn_) {
        std::fprintf(stderr, "\r\033[K");
        std::fflush(stderr);
        drawn_ = false;
    }
}

}  // namespace ssync
