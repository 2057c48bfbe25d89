public import Foundation
public import Logging
import NIOPosix
public import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Every `interval`, starts the kernel's writeback of the embedded cluster's data files written
/// since the last pass, so that they reach the disk in small steps instead of in one burst.
///
/// Why: PostgreSQL 15 grows a table by writing zero-filled pages, which stay dirty in Linux's page
/// cache until the file's oldest dirty page is 30 s old (`vm.dirty_expire_centisecs`); the flusher
/// then writes all of that file's dirty pages at once. A fleet storing meter readings at 6–7 MB/s
/// left ~170 MB for every such flush, and the commits' WAL flushes queued behind it: a 100–170 ms
/// stall every 30 s in which every charger's answer was late (BENCHMARKS.md, 2026-11-26).
/// The host of a database of one's own is tuned with `vm.dirty_background_bytes`; the embedded
/// cluster runs on the user's machine, whose settings are not ours to change, so Chargepath paces
/// the cluster's own files: `sync_file_range(SYNC_FILE_RANGE_WRITE)` starts their writeback and
/// neither waits for it nor flushes anything else (no journal commit, no other file).
/// Linux only; elsewhere the service returns at once.
public struct WritebackPacer: Service {
    public let directory: URL
    public let interval: Duration
    let logger: Logger

    /// `directory`: the cluster's `base` folder (the databases' data files).
    public init(directory: URL, interval: Duration = .seconds(1), logger: Logger) {
        self.directory = directory
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        guard Self.syncFileRange != nil else {
            logger.debug("No sync_file_range on this system: the embedded cluster's writeback is left to the kernel")
            return
        }
        var since = Date()
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                return
            }
            let passStarted = Date()
            // A second of overlap: a file written just as the last pass listed it is taken again.
            let from = since.addingTimeInterval(-1)
            let directory = self.directory
            // Blocking system calls, off the cooperative pool.
            _ = try? await NIOThreadPool.singleton.runIfActive { Self.startWriteback(in: directory, modifiedSince: from) }
            since = passStarted
        }
    }

    /// Starts the writeback of every regular file under `directory` modified at or after `date`.
    /// Returns their paths relative to `directory`, for the files where it started.
    /// The walk is `readdir` and `fstatat` on directory descriptors: Foundation's enumerator made
    /// each pass cost about 3% of the server's CPU under a fleet's sessions (perf, 2026-11-26).
    static func startWriteback(in directory: URL, modifiedSince date: Date) -> [String] {
        #if os(Linux)
        guard let syncFileRange else { return [] }
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let threshold = timespec(tv_sec: Int(seconds), tv_nsec: Int((date.timeIntervalSince1970 - seconds) * 1e9))
        var started: [String] = []
        walk(directoryFD: fd, prefix: "", depth: 0, threshold: threshold, syncFileRange: syncFileRange, started: &started)
        return started
        #else
        return []
        #endif
    }

    #if os(Linux)
    /// Takes ownership of `directoryFD` (closed on return). The cluster's `base` is two levels deep
    /// (a folder per database); `depth` stops a link loop or an odd tree from going on forever.
    private static func walk(directoryFD: Int32, prefix: String, depth: Int, threshold: timespec,
                             syncFileRange: SyncFileRange, started: inout [String]) {
        guard let stream = fdopendir(directoryFD) else {
            close(directoryFD)
            return
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var info = stat()
            guard fstatat(directoryFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFDIR where depth < 4:
                let child = openat(directoryFD, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                guard child >= 0 else { continue }
                walk(directoryFD: child, prefix: prefix + name + "/", depth: depth + 1, threshold: threshold,
                     syncFileRange: syncFileRange, started: &started)
            case S_IFREG:
                let modified = info.st_mtim
                guard modified.tv_sec > threshold.tv_sec
                    || (modified.tv_sec == threshold.tv_sec && modified.tv_nsec >= threshold.tv_nsec) else { continue }
                let file = openat(directoryFD, name, O_RDONLY | O_CLOEXEC)
                guard file >= 0 else { continue }
                if syncFileRange(file, 0, 0, Self.syncFileRangeWrite) == 0 { started.append(prefix + name) }
                close(file)
            default:
                continue
            }
        }
    }
    #endif

    typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// `SYNC_FILE_RANGE_WRITE` (linux/fs.h).
    static let syncFileRangeWrite: UInt32 = 2

    /// glibc's `sync_file_range`, which Swift's Glibc module does not import (it is a GNU
    /// extension); looked up once by name.
    static let syncFileRange: SyncFileRange? = {
        #if os(Linux)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sync_file_range") else { return nil }
        return unsafeBitCast(symbol, to: SyncFileRange.self)
        #else
        return nil
        #endif
    }()
}
