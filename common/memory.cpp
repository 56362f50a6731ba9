#include "ssync/memory.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>

namespace ssync {

void tune_allocator_for_short_runs() {
    constexpr int kPad = 64 << 20;
    // Under a limit on address space or data (ulimit -v, -d), every growth of the heap would
    // ask for the pad too: requests of a few bytes would fail while memory for them remains,
    // inside C libraries (OpenSSL) that abort on that instead of failing the call. glibc's
    // defaults then.
    for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
        struct rlimit limit;
        if (::getrlimit(resource, &limit) != 0 || limit.rlim_cur != RLIM_INFINITY) return;
    }
    // Blocks below 32 MiB (glibc's largest threshold: a manifest's bytes, the entry vectors)
    // come from the heap, whose pages are reused, instead of an mmap() per block whose pages
    // all fault in afresh.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 2 * kPad);
    mallopt(M_TOP_PAD, kPad);
    // Grow the heap now (a block larger than what is left at its top makes malloc extend it by
    // the block plus M_TOP_PAD), then ask for huge pages on the new part: one fault per 2 MiB
    // instead of 512. Under a sanitizer, which has its own allocator and no brk heap, the two
    // ends are equal and nothing is done.
    auto* before = static_cast<char*>(::sbrk(0));
    void* block = std::malloc(1 << 20);
    // Used, so that the compiler cannot drop the malloc/free pair.
    asm volatile("" : : "r"(block) : "memory");
    auto* after = static_cast<char*>(::sbrk(0));
    std::free(block);
    if (before == reinterpret_cast<char*>(-1) || after == reinterpret_cast<char*>(-1) || after <= before) return;
    constexpr std::uintptr_t kHuge = 2 << 20;
    auto begin = (reinterpret_cast<std::uintptr_t>(before) + kHuge - 1) & ~(kHuge - 1);
    auto end = reinterpret_cast<std::uintptr_t>(after) & ~(kHuge - 1);
    if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

}  // namespace ssync
