#include "ssync/sync.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <unordered_set>

#include "ssync/hash.h"
#include "ssync/packs.h"
#include "ssync/publication.h"
#include "ssync/release.h"
#include "ssync/report.h"
#include "ssync/state.h"

namespace ssync {

namespace {

Status rollback_error(const std::string& name, std::uint64_t offered, std::uint64_t applied) {
    return Status(Code::bad_manifest, name + ": the publication offers serial " + std::to_string(offered) +
                                          ", older than the applied serial " + std::to_string(applied) +
                                          ": rollback refused");
}

// The pack index of the release, when packs would save requests: for a mirror catching up on
// much of a release (a first sync). The index costs ~80 bytes per small object of the whole
// release, so it is fetched only when at least a quarter of those are wanted; a mirror taking
// a release's few changes fetches them one by one, as cheaply in bytes as ever. The index is
// unsigned and optional: missing, unreadable or malformed, it is ignored and every object is
// fetched by itself. `fetched` counts its bytes.
std::optional<PackIndex> useful_pack_index(Transport& transport, const Manifest& manifest, const Plan& plan,
                                           std::uint64_t& fetched) {
    std::unordered_set<std::string_view> small;
    for (const Entry& e : manifest.entries) {
        if (e.type == EntryType::file && e.size <= kPackMaxObjectSize) small.insert(e.sha256);
    }
    std::uint64_t wanted = 0;
    for (const Entry* e : plan.download) wanted += e->size <= kPackMaxObjectSize;
    if (wanted < 2 || wanted * 4 < small.size()) return std::nullopt;
    auto text = transport.fetch(layout::pack_index_path(manifest.serial), kMaxPackIndexBytes);
    if (!text) return std::nullopt;
    fetched += text->size();
    auto index = parse_pack_index(*text, layout::pack_index_path(manifest.serial));
    if (!index) return std::nullopt;
    return std::move(index).value();
}

// The manifest DEST recorded at the last successful run, if it is the one the state vouches for.
std::optional<std::pair<std::string, std::string>> recorded_release(int meta_fd, const SyncState& state,
                                                                    const ManifestLimits& limits) {
    auto bytes = read_file_bounded(meta_fd, layout::kManifest, limits.max_bytes, layout::kManifest);
    auto sig = read_file_bounded(meta_fd, layout::kSignature, kMaxSignatureBytes, layout::kSignature);
    if (!bytes || !sig) return std::nullopt;
    if (sha256_hex(*bytes) != state.manifest_sha256 || sha256_hex(*sig) != state.signature_sha256) return std::nullopt;
    return std::make_pair(std::move(bytes).value(), std::move(sig).value());
}

// What a first sync made in DEST, removed if it fails before it stages any content (the release
// refused, or not to be had): DEST itself when it did not exist, else DEST/.ssync when that did
// not. Destroyed while the run still holds DEST's lock; best effort, the run's own error stands.
class FirstSyncCleanup {
public:
    struct Before {
        bool dest_existed = false, meta_existed = false;
    };
    // Looked at before Installer::open makes them.
    static Before look(const std::string& dest) {
        Before b;
        struct stat st;
        b.dest_existed = ::lstat(dest.c_str(), &st) == 0;
        b.meta_existed = b.dest_existed && ::fstatat(AT_FDCWD, join_path(dest, kReservedDir).c_str(), &st,
                                                     AT_SYMLINK_NOFOLLOW) == 0;
        return b;
    }
    FirstSyncCleanup(const std::string& dest, FileSystem& fs, Before before)
        : dest_(dest), fs_(fs), before_(before) {}
    ~FirstSyncCleanup() {
        if (kept_ || before_.meta_existed) return;
        // An exception leaving a destructor ends the process: out of memory, what was made stays
        // (the next run takes it over).
        try {
            if (!before_.dest_existed) {
                (void)remove_tree(fs_, AT_FDCWD, dest_, dest_);
                return;
            }
            UniqueFd dest(::open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (dest) (void)remove_tree(fs_, dest.get(), std::string(kReservedDir), join_path(dest_, kReservedDir));
        } catch (...) {
        }
    }
    FirstSyncCleanup(const FirstSyncCleanup&) = delete;
    FirstSyncCleanup& operator=(const FirstSyncCleanup&) = delete;
    // From here on DEST keeps what this run made, success or not.
    void keep() { kept_ = true; }

private:
    std::string dest_;
    FileSystem& fs_;
    Before before_;
    bool kept_ = false;
};

}  // namespace

Result<SyncReport> sync_release(const SyncOptions& options) {
    auto start = std::chrono::steady_clock::now();
    auto lap = start;
    // Seconds since the previous call (or the start).
    auto since_lap = [&lap] {
        auto now = std::chrono::steady_clock::now();
        double s = std::chrono::duration<double>(now - lap).count();
        lap = now;
        return s;
    };
    FileSystem& fs = options.fs ? *options.fs : system_fs();
    std::string keyring_sha256;
    {
        // Fail early on a misconfigured keyring, even on runs that would not need gpg. Its
        // digest tells whether the verdict recorded for an applied release was reached with
        // these very keys.
        auto keyring = read_file_bounded(options.keyring, 16 << 20);
        if (!keyring) return keyring.status();
        keyring_sha256 = sha256_hex(*keyring);
    }
    InstallOptions install_options;
    install_options.owners = options.owners;
    install_options.extras = options.extras;
    install_options.verify_all = options.verify_all;
    install_options.fs = &fs;
    SSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Transport> transport, open_transport(options.url, options.transport));
    install_options.source_dir_fd = transport->local_dir_fd();
    // A first sync (no DEST, or no DEST/.ssync) that fails before staging leaves DEST as it
    // found it: what Installer::open made (DEST itself, or .ssync with its lock and staging) is
    // removed again. Only by the run that holds the lock: a run that found another one busy
    // removes nothing.
    FirstSyncCleanup::Before before_open = FirstSyncCleanup::look(options.dest);
    SSYNC_ASSIGN_OR_RETURN(Installer installer, Installer::open(options.dest, install_options));
    SSYNC_ASSIGN_OR_RETURN(FileLock lock, FileLock::acquire(installer.meta_fd(), "lock", options.dest));
    FirstSyncCleanup first_sync(options.dest, fs, before_open);  // destroyed before `lock`
    SSYNC_ASSIGN_OR_RETURN(StateStore store, StateStore::open(fs, options.state_dir));

    SyncReport report;
    std::string name = options.name;
    if (name.empty()) {
        // The name DEST was last synced with: keeps a mirror from silently switching file sets.
        // Only the name is needed, not megabytes of entries: ssync writes it near the top, so
        // the first 64 KiB hold it. Unverified, and not trusted: it only picks the state, and
        // the release must then carry this name. Not found: the release's own name is used.
        if (auto head = read_file_prefix(installer.meta_fd(), layout::kManifest, 64 << 10, layout::kManifest)) {
            if (auto recorded = peek_manifest_name(*head)) name = *recorded;
        }
    }
    std::optional<SyncState> state;
    if (!name.empty()) {
        SSYNC_ASSIGN_OR_RETURN(state, store.load(name));
        if (state) report.previous_serial = state->serial;
    }

    SSYNC_ASSIGN_OR_RETURN(ReleaseFiles files, locate_release(*transport));
    ContentLayout content = files.manifest_path.rfind(".ssync/", 0) == 0 ? ContentLayout::tree : ContentLayout::objects;

    std::string manifest_bytes, signature;
    Manifest manifest;
    bool have_release = false;
    bool verified_now = false;         // gpg verified the release in this run (with this keyring)
    std::int64_t verified_until = 0;   // then: until when that verdict holds
    if (state && files.announced_serial) {
        if (*files.announced_serial < state->serial) return rollback_error(name, *files.announced_serial, state->serial);
        if (*files.announced_serial == state->serial) {
            // Probably nothing new: compare the small signature before fetching the manifest.
            SSYNC_ASSIGN_OR_RETURN(std::string sig, transport->fetch(files.signature_path, kMaxSignatureBytes));
            report.bytes_fetched += sig.size();
            // The verdict recorded with the state stands only for the same keyring (a key
            // removed or revoked there must stop the mirror) and until a key or the
            // signature expires; otherwise the release is fetched and verified again below.
            bool verdict_holds = state->keyring_sha256 == keyring_sha256 &&
                                 (state->verified_until == 0 || options.now < state->verified_until);
            if (sha256_hex(sig) == state->signature_sha256 && verdict_holds) {
                if (state->expires <= options.now) {
                    return Status(Code::bad_manifest,
                                  name + ": serial " + std::to_string(state->serial) + " expired at " +
                                      format_rfc3339(state->expires) + " and the publication offers nothing newer: "
                                      "the master stopped re-signing or the mirror is frozen");
                }
                // The common case from cron: nothing new, nothing touched. Confirmed by the
                // tree's stat data alone, without parsing the manifest or planning.
                if (!options.verify_all && installer.unchanged_since_record(state->manifest_sha256)) {
                    report.name = name;
                    report.serial = state->serial;
                    report.noop = true;
                    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                    first_sync.keep();
                    return report;
                }
                if (auto recorded = recorded_release(installer.meta_fd(), *state, options.limits)) {
                    if (auto m = parse_manifest(recorded->first, options.limits)) {
                        manifest = std::move(m).value();
                        manifest_bytes = std::move(recorded->first);
                        signature = std::move(recorded->second);
                        have_release = true;
                    }
                }
            }
        }
    }
    if (!have_release) {
        SSYNC_ASSIGN_OR_RETURN(auto verifier, SignatureVerifier::create(options.keyring));
        TrustPolicy policy;
        policy.now = options.now;
        policy.expected_name = name;
        policy.limits = options.limits;
        SSYNC_ASSIGN_OR_RETURN(VerifiedRelease release, fetch_release(*transport, *verifier, policy));
        report.bytes_fetched += release.manifest_bytes.size() + release.signature.size();
        verified_until = release.signer.valid_until;
        verified_now = true;
        if (!state && name.empty()) {
            // A fresh DEST, no --name: the state for the release's own name still guards
            // against a replayed old release.
            SSYNC_ASSIGN_OR_RETURN(state, store.load(release.manifest.name));
            if (state) report.previous_serial = state->serial;
        }
        if (state) {
            if (release.manifest.serial < state->serial) {
                return rollback_error(release.manifest.name, release.manifest.serial, state->serial);
            }
            if (release.manifest.serial == state->serial && release.manifest_sha256 != state->manifest_sha256) {
                return Status(Code::bad_manifest, release.manifest.name + ": serial " + std::to_string(state->serial) +
                                                      " was applied with different manifest bytes; a release "
                                                      "never changes under the same serial: refused");
            }
        }
        manifest = std::move(release.manifest);
        manifest_bytes = std::move(release.manifest_bytes);
        signature = std::move(release.signature);
    }
    report.name = manifest.name;
    report.serial = manifest.serial;
    report.phases.release = since_lap();

    SSYNC_ASSIGN_OR_RETURN(Plan plan, installer.plan(manifest));
    report.phases.plan = since_lap();
    report.added = plan.added;
    report.changed = plan.changed;
    report.removed = plan.removed;
    report.files_hashed = plan.files_hashed;
    bool same_release = state && state->serial == manifest.serial;
    if (plan.empty() && same_release) {
        // The tree is right. The release kept in DEST/.ssync is right too when it was read
        // from there (have_release); otherwise it was missing or damaged: record it again.
        bool kept_intact = have_release;
        if (!kept_intact) {
            auto kept = read_file_bounded(installer.meta_fd(), layout::kManifest, options.limits.max_bytes,
                                          layout::kManifest);
            kept_intact = kept && *kept == manifest_bytes;
        }
        if (kept_intact) {
            // The cheap check (the tree stamp) failed, yet nothing needed doing: the tree's stat
            // data moved. Record it, or every later run would plan, and hash, all over again.
            installer.refresh_record(manifest_bytes);
        } else {
            SSYNC_RETURN_IF_ERROR(installer.record(manifest, manifest_bytes, signature));
        }
        if (verified_now && (state->keyring_sha256 != keyring_sha256 || state->verified_until != verified_until)) {
            // Verified again (a new keyring, or a state from before verdicts were recorded):
            // remembered, so that the next run can skip gpg again.
            SyncState renewed = *state;
            renewed.keyring_sha256 = keyring_sha256;
            renewed.verified_until = verified_until;
            SSYNC_RETURN_IF_ERROR(store.save(renewed));
        }
        report.noop = kept_intact;
        report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        first_sync.keep();
        return report;
    }

    // What must work after DEST is switched is checked before it is touched: a run that could
    // not record the new serial would apply whatever it is offered, older releases included.
    SSYNC_RETURN_IF_ERROR(store.check_writable());
    if (!options.atomic_tree) SSYNC_RETURN_IF_ERROR(installer.prepare_record(manifest));

    for (const auto& [hash, source] : plan.local_source) report.files_copied_locally += !source.empty();
    Progress progress("fetching", plan.download.size(), plan.bytes_to_download, options.progress);
    DownloadOptions download_options;
    download_options.attempts = options.transport.attempts;
    download_options.max_parallel = options.max_parallel;
    std::atomic<std::uint64_t> files_fetched{0}, bytes_fetched{0};
    download_options.progress = [&](std::uint64_t n, std::uint64_t bytes) {
        files_fetched += n;
        bytes_fetched += bytes;
        progress.add(n, bytes);
    };
    std::optional<PackIndex> packs;
    if (content == ContentLayout::objects) packs = useful_pack_index(*transport, manifest, plan, report.bytes_fetched);
    StageReport stage_report;
    Status staged = installer.stage(plan, *transport, content, download_options, packs ? &*packs : nullptr,
                                    &stage_report);
    report.phases.flush = stage_report.flush_seconds;
    report.packs_fetched = stage_report.packs.packs;
    // What crossed the wire: pack bytes no object was cut from count too.
    report.bytes_fetched += stage_report.packs.bytes - stage_report.packs.object_bytes;
    progress.finish();
    // Content verified into staging is worth keeping even if this run fails: the next run
    // resumes from it rather than fetching it again. Not when the disk ran full: stage()
    // removed it, and a first sync leaves nothing behind.
    if (installer.staging_kept()) first_sync.keep();
    if (!staged && staged.code() == Code::transport && staged.message().rfind(transport->describe(), 0) != 0) {
        // "objects/f7/...: SHA-256 ... does not match": say which publication served it.
        return staged.with_context(transport->describe());
    }
    SSYNC_RETURN_IF_ERROR(staged);
    report.files_fetched = files_fetched;
    report.bytes_fetched += bytes_fetched;
    report.phases.stage = since_lap() - report.phases.flush;

    if (options.atomic_tree) {
        SSYNC_RETURN_IF_ERROR(installer.apply_whole_tree(manifest, plan, manifest_bytes, signature));
        report.phases.apply = since_lap();
    } else {
        SSYNC_RETURN_IF_ERROR(installer.apply(manifest, plan));
        report.phases.apply = since_lap();
        SSYNC_RETURN_IF_ERROR(installer.record(manifest, manifest_bytes, signature));
        report.phases.record = since_lap();
    }
    SyncState next;
    next.name = manifest.name;
    next.serial = manifest.serial;
    next.manifest_sha256 = sha256_hex(manifest_bytes);
    next.signature_sha256 = sha256_hex(signature);
    next.expires = manifest.expires;
    next.dest = options.dest;
    // A release taken from DEST/.ssync (same serial, same bytes) keeps the verdict it had.
    next.keyring_sha256 = verified_now ? keyring_sha256 : state->keyring_sha256;
    next.verified_until = verified_now ? verified_until : state->verified_until;
    SSYNC_RETURN_IF_ERROR(store.save(next));
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;  // first_sync was kept when staging ended
}

}  // namespace ssync
