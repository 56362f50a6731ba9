// Output for people and scripts: progress on a terminal, quiet otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace ssync {

// A one-line progress display on standard error, redrawn at most ten times a second. Disabled
// (no output at all) when standard error is not a terminal, so cron stays silent. add() may be
// called from many threads.
class Progress {
public:
    Progress(std::string verb, std::uint64_t total_items, std::uint64_t total_bytes, bool enabled);
    ~Progress() { finish(); }
    void add(std::uint64_t items, std::uint64_t bytes);
    void set_totals(std::uint64_t total_items, std::uint64_t total_bytes);
    void finish();  // erases the line

private:
    void draw(bool force);
    std::string verb_;
    std::atomic<std::uint64_t> total_items_, total_bytes_;
    std::atomic<std::uint64_t> items_{0}, bytes_{0};
    bool enabled_;
    bool drawn_ = false;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

bool stderr_is_terminal();
// "1.5 GiB", "12 KiB", "17 B"
std::string human_bytes(std::uint64_t bytes);

}  // namespace ssync
