// Running independent work items on all cores.
#pragma once

#include <cstddef>
#include <functional>

#include "ssync/status.h"

namespace ssync {

// Calls work(i) for every i in [0, count) on up to `threads` threads (0: one per core). Items
// are taken in index order, so callers put the largest first for balance. After the first
// error no new item starts; that error is returned.
Status parallel_for(std::size_t count, unsigned threads,
                    const std::function<Status(std::size_t)>& work);

unsigned default_thread_count();

}  // namespace ssync
