#!/usr/bin/env python3
"""Deterministic benchmark trees for ssync.

    make-tree.py DIR            create DIR (must not exist): ~20,000 files, ~1 GiB
    make-tree.py --update DIR   edit DIR in place, as a new release would: ~1% of the files
                                edited, added, deleted or renamed, plus small in-place edits
                                to two large binaries. Run it on a fresh copy of a tree made
                                by this script (cp -a), once.

Same bytes, names, modes and mtimes on every run and machine (seeded PRNG; Python >= 3.9).
Most files are small; most bytes are in a few large binaries. Binary data comes from
random.randbytes (~400 MB/s), text from slices of one pre-generated corpus, so the whole
tree takes a few seconds to write.
"""

import os
import random
import sys

SEED = 20240601
UPDATE_SEED = 20240602
MTIME = 1_700_000_000          # every file's mtime, plus its index (seconds)
UPDATE_MTIME = 1_710_000_000   # mtime of what --update touches

KiB = 1024
MiB = 1024 * KiB

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu int return static const void struct include define if else for while "
         "break continue switch case default the of and to in is that it was for on are "
         "with as his they be at one have this from or had by word but what some we can "
         "out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make "
         "thing see him two has look more day could go come did number sound no most "
         "people my over know water than call first who may down side been now find").split()
DIR_WORDS = ("src lib include docs share assets data tests tools config locale images "
             "fonts scripts modules vendor build plugins core util net io gui media").split()
TEXT_EXTS = [".txt", ".c", ".h", ".py", ".json", ".md", ".cfg", ".html", ".csv"]
BIN_EXTS = [".bin", ".dat", ".png", ".so", ".gz", ".pak"]


def log_uniform(rng, lo, hi):
    return int(lo * (hi / lo) ** rng.random())


def make_corpus(rng, size):
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(3, 14))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


class Content:
    """Byte generators. Every file gets a unique first line, so no two files share content
    (the publication stores identical content once, which would flatter the benchmark)."""

    def __init__(self, rng):
        self.rng = rng
        self.corpus = make_corpus(rng, 4 * MiB)

    def text(self, tag, size):
        head = ("# %s\n" % tag).encode()
        n = max(0, size - len(head))
        start = self.rng.randrange(0, len(self.corpus) - n) if n < len(self.corpus) else 0
        return head + self.corpus[start:start + n]

    def binary(self, tag, size):
        head = ("BIN %s\n" % tag).encode()
        return head + self.rng.randbytes(max(0, size - len(head)))


def write_file(path, data, mode, mtime):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def write_large(path, tag, size, rng, mtime):
    # In 8 MiB pieces so that a 90 MiB file never sits in memory at once.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, ("BIN %s\n" % tag).encode())
        left = size - os.fstat(fd).st_size
        while left > 0:
            n = min(left, 8 * MiB)
            os.write(fd, rng.randbytes(n))
            left -= n
    finally:
        os.close(fd)
    os.chmod(path, 0o644)
    os.utime(path, (mtime, mtime))


def make_dirs(rng):
    """About 1,000 directories, up to 6 levels deep, as relative paths (parents first)."""
    dirs = [""]
    frontier = [""]
    names = DIR_WORDS + ["v%d" % i for i in range(1, 9)] + ["café", "Program Files", "ünïcode"]
    while frontier and len(dirs) < 1000:
        parent = frontier.pop(0)
        depth = parent.count("/") + 1 if parent else 0
        if depth >= 6:
            continue
        for name in rng.sample(names, rng.randint(2, 5) if depth < 4 else rng.randint(0, 3)):
            d = name if not parent else parent + "/" + name
            dirs.append(d)
            frontier.append(d)
    return dirs


def create(root):
    rng = random.Random(SEED)
    content = Content(rng)
    os.mkdir(root)
    dirs = make_dirs(rng)
    for d in dirs[1:]:
        os.mkdir(os.path.join(root, d))

    # (size, kind) per file: a few huge binaries, some mid-size, very many small ones.
    specs = [(90 * MiB, "large"), (90 * MiB, "large"), (90 * MiB, "large"), (48 * MiB, "large")]
    specs += [(log_uniform(rng, 8 * MiB, 24 * MiB), "large") for _ in range(10)]
    specs += [(log_uniform(rng, 128 * KiB, 4 * MiB), "binary") for _ in range(290)]
    specs += [(log_uniform(rng, 1 * KiB, 48 * KiB),
               "binary" if rng.random() < 0.25 else "text") for _ in range(19_600)]
    rng.shuffle(specs)

    used = set()
    files = []
    total = 0
    for i, (size, kind) in enumerate(specs):
        d = rng.choice(dirs)
        exe = kind == "text" and rng.random() < 0.04
        ext = ".sh" if exe else rng.choice(TEXT_EXTS if kind == "text" else BIN_EXTS)
        name = "%s-%s%s" % (rng.choice(WORDS), rng.choice(WORDS), ext)
        rel = name if not d else d + "/" + name
        while rel in used:
            name = "%d-%s" % (rng.randrange(1000), name)
            rel = name if not d else d + "/" + name
        used.add(rel)
        path = os.path.join(root, rel)
        mtime = MTIME + i
        if kind == "large":
            write_large(path, rel, size, rng, mtime)
        elif kind == "binary":
            write_file(path, content.binary(rel, size), 0o644, mtime)
        else:
            data = content.text(rel, size)
            if exe:
                data = b"#!/bin/sh\n" + data
            write_file(path, data, 0o755 if exe else 0o644, mtime)
        files.append(rel)
        total += os.path.getsize(path)

    # Symlinks: relative links to files and directories, a few dangling ones.
    links = 0
    for i in range(200):
        d = rng.choice(dirs)
        rel = ("link-%d" % i) if not d else d + "/link-%d" % i
        if i % 50 == 0:
            target = "does-not-exist-%d" % i
        else:
            goal = rng.choice(files if i % 5 else dirs[1:])
            target = os.path.relpath(goal, d or ".")
        os.symlink(target, os.path.join(root, rel))
        links += 1

    for d in reversed(dirs):
        p = os.path.join(root, d) if d else root
        os.utime(p, (MTIME, MTIME))
    print("%s: %d files (%.2f GiB), %d directories, %d symlinks"
          % (root, len(files), total / (1024 ** 3), len(dirs) - 1, links))


def walk_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    out.sort()
    return out


def update(root):
    rng = random.Random(UPDATE_SEED)
    content = Content(rng)
    files = walk_files(root)
    by_size = sorted(files, key=lambda f: (-os.path.getsize(os.path.join(root, f)), f))
    large, rest = by_size[:2], by_size[2:]
    n = max(1, len(files) // 400)   # four kinds of change, ~1% of the files in all
    rng.shuffle(rest)
    edits, deletes, renames = rest[:n], rest[n:2 * n], rest[2 * n:3 * n]

    for rel in edits:
        p = os.path.join(root, rel)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            # Half keep their size (only the content and mtime change), half grow.
            off = rng.randrange(0, max(1, size - 64))
            f.seek(off)
            f.write(rng.randbytes(min(64, size - off)))
            if rng.random() < 0.5:
                f.seek(0, os.SEEK_END)
                f.write(content.text(rel + " appended", rng.randint(100, 4 * KiB)))
        os.utime(p, (UPDATE_MTIME, UPDATE_MTIME))

    for rel in deletes:
        os.unlink(os.path.join(root, rel))

    for i, rel in enumerate(renames):
        src = os.path.join(root, rel)
        if i % 2:   # to another directory
            d = os.path.dirname(rng.choice(files))
            dst_rel = os.path.join(d, "moved-%d-%s" % (i, os.path.basename(rel)))
        else:
            dst_rel = os.path.join(os.path.dirname(rel), "renamed-%d-%s" % (i, os.path.basename(rel)))
        os.rename(src, os.path.join(root, dst_rel))

    os.makedirs(os.path.join(root, "added/new-dir"))
    for i in range(n):
        d = "added/new-dir" if i % 4 == 0 else os.path.dirname(rng.choice(files))
        rel = os.path.join(d, "added-%d.txt" % i)
        write_file(os.path.join(root, rel), content.text(rel, log_uniform(rng, KiB, 32 * KiB)),
                   0o644, UPDATE_MTIME)

    # Large binaries: three small in-place overwrites each, size unchanged (what a delta
    # transfer should handle well).
    for rel in large:
        p = os.path.join(root, rel)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            for _ in range(3):
                f.seek(rng.randrange(0, size - 4 * KiB))
                f.write(rng.randbytes(4 * KiB))
        os.utime(p, (UPDATE_MTIME, UPDATE_MTIME))

    print("%s: edited %d, deleted %d, renamed %d, added %d files; patched 2 large binaries (%s)"
          % (root, n, n, n, n, ", ".join(large)))


def main(argv):
    if len(argv) == 2 and not argv[1].startswith("-"):
        create(argv[1])
    elif len(argv) == 3 and argv[1] == "--update":
        update(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
