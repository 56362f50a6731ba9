// How the programs ask the C library for memory.
#pragma once

namespace ssync {

// Tunes glibc's allocator for a short-lived command that builds tens of megabytes of entries
// and exits: the heap grows in one 64 MiB step that is asked to be backed by huge pages
// (madvise; the kernel may decline), large blocks come from that heap rather than from fresh
// mmap()s, and nothing is handed back to the system before exit. Why: on the development VM
// (a PVM guest) the first touch of a 4 KiB page costs ~18 us, so a re-sign of the bench tree
// spent a third of its time in page faults. Best effort; changes nothing a program computes.
// Call once, first thing in main(), before threads exist.
void tune_allocator_for_short_runs();

}  // namespace ssync
