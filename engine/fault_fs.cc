#include "engine/fault_fs.h"

#include <algorithm>
#include <charconv>

#include "engine/strings.h"
#include "rocksdb/file_system.h"

namespace spool::engine {

absl::StatusOr<FaultSpec> ParseFaultSpec(std::string_view spec) {
  FaultSpec out;
  while (!spec.empty()) {
    std::string_view part = spec.substr(0, spec.find(','));
    spec.remove_prefix(std::min(spec.size(), part.size() + 1));
    if (part.empty()) continue;
    std::string_view name = part.substr(0, part.find('='));
    std::string_view value =
        part.find('=') == std::string_view::npos ? "" : part.substr(part.find('=') + 1);
    int64_t n = -1;
    if (!value.empty()) {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n < 0) {
        return absl::InvalidArgumentError(
            Cat("test faults: \"", part, "\" needs a count of 0 or more"));
      }
    }
    if (name == "unsynced-loss" && value.empty()) {
      out.unsynced_loss = true;
    } else if (name == "eio-on-wal-sync-after" && !value.empty()) {
      out.eio_on_wal_sync_after = n;
    } else if (name == "enospc-after-bytes" && !value.empty()) {
      out.enospc_after_bytes = n;
    } else {
      return absl::InvalidArgumentError(
          Cat("test faults: unknown fault \"", part,
              "\" (known: unsynced-loss, eio-on-wal-sync-after=N, enospc-after-bytes=N)"));
    }
  }
  return out;
}

namespace {

bool IsWal(std::string_view path) { return path.ends_with(".log"); }

// RocksDB's human-readable LOG files are diagnostics, not data: pass them through untouched.
bool IsInfoLog(std::string_view path) {
  std::string_view base = path.substr(path.rfind('/') + 1);
  return base.starts_with("LOG");
}

}  // namespace

class FaultFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultFile(std::unique_ptr<rocksdb::FSWritableFile> target,
            std::shared_ptr<FaultController> control, bool wal)
      : FSWritableFileOwnerWrapper(std::move(target)), control_(std::move(control)), wal_(wal) {}

  ~FaultFile() override {
    // A file dropped without Close: its bytes reach the OS unless the power is off.
    if (!closed_) WriteOut(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
  }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (control_->crashed()) return PowerOff();
    const FaultSpec& spec = control_->spec();
    int64_t total = control_->bytes_appended_.fetch_add(static_cast<int64_t>(data.size())) +
                    static_cast<int64_t>(data.size());
    if (spec.enospc_after_bytes >= 0 && total > spec.enospc_after_bytes) {
      control_->bytes_appended_.fetch_sub(static_cast<int64_t>(data.size()));
      ++control_->injected_errors_;
      return rocksdb::IOStatus::NoSpace("injected by --test-faults", "no space left on device");
    }
    if (!spec.unsynced_loss) return target()->Append(data, options, dbg);
    held_.append(data.data(), data.size());
    return rocksdb::IOStatus::OK();
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo&,
                           rocksdb::IODebugContext* dbg) override {
    return Append(data, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (control_->crashed()) return PowerOff();
    if (auto s = WriteOut(options, dbg); !s.ok()) return s;
    return target()->PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo&,
                                     rocksdb::IODebugContext* dbg) override {
    return PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    if (control_->crashed()) return PowerOff();
    if (auto s = WriteOut(options, dbg); !s.ok()) return s;
    return target()->Truncate(size, options, dbg);
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (control_->crashed()) return PowerOff();
    // Under unsynced-loss a flush is what it is to a real disk: no promise at all.
    if (control_->spec().unsynced_loss) return rocksdb::IOStatus::OK();
    return target()->Flush(options, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&,
                              rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();  // a hint; Sync is what makes bytes durable
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return DoSync(options, dbg, /*full=*/false);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return DoSync(options, dbg, /*full=*/true);
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    closed_ = true;
    rocksdb::IOStatus s = WriteOut(options, dbg);
    rocksdb::IOStatus c = target()->Close(options, dbg);
    return s.ok() ? c : s;
  }
  // Preallocation is a speed hint; skipping it keeps the held bytes and the file in step and
  // spares tmpfs from zeroing a log's worth of pages on every open.
  void PrepareWrite(size_t, size_t, const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {}
  rocksdb::IOStatus Allocate(uint64_t, uint64_t, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }
  uint64_t GetFileSize(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return target()->GetFileSize(options, dbg) + held_.size();
  }

 private:
  static rocksdb::IOStatus PowerOff() {
    return rocksdb::IOStatus::IOError("injected by --test-faults", "the power is off");
  }

  rocksdb::IOStatus DoSync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg,
                           bool full) {
    if (control_->crashed()) return PowerOff();
    const FaultSpec& spec = control_->spec();
    if (wal_ && spec.eio_on_wal_sync_after >= 0 &&
        control_->wal_syncs() >= spec.eio_on_wal_sync_after) {
      ++control_->injected_errors_;
      return rocksdb::IOStatus::IOError("injected by --test-faults", "EIO on fsync");
    }
    if (auto s = WriteOut(options, dbg); !s.ok()) return s;
    rocksdb::IOStatus s = full ? target()->Fsync(options, dbg) : target()->Sync(options, dbg);
    if (s.ok() && wal_) ++control_->wal_syncs_;
    return s;
  }

  // Hands the held bytes to the OS (not durable until the target syncs). After a crash they
  // are dropped instead: that is the power cut.
  rocksdb::IOStatus WriteOut(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) {
    if (held_.empty()) return rocksdb::IOStatus::OK();
    if (control_->crashed()) {
      held_.clear();
      return PowerOff();
    }
    rocksdb::IOStatus s = target()->Append(held_, options, dbg);
    if (s.ok()) s = target()->Flush(options, dbg);
    held_.clear();
    return s;
  }

  const std::shared_ptr<FaultController> control_;
  const bool wal_;
  std::string held_;
  bool closed_ = false;
};

namespace {

class FaultFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                  std::shared_ptr<FaultController> control)
      : FileSystemWrapper(std::move(base)), control_(std::move(control)) {}

  const char* Name() const override { return "SpoolFaultFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    return Wrap(f, target()->NewWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    return Wrap(f, target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    return Wrap(f, target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }

 private:
  rocksdb::IOStatus Wrap(const std::string& path, rocksdb::IOStatus s,
                         std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (!s.ok() || IsInfoLog(path)) return s;
    if (control_->crashed()) {
      r->reset();
      return rocksdb::IOStatus::IOError("injected by --test-faults", "the power is off");
    }
    *r = std::make_unique<FaultFile>(std::move(*r), control_, IsWal(path));
    return s;
  }

  const std::shared_ptr<FaultController> control_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewFaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                        std::shared_ptr<FaultController> control) {
  return std::make_shared<FaultFileSystem>(std::move(base), std::move(control));
}

}  // namespace spool::engine
