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
    static func startWriteback(in directory: URL, modifiedSince date: Date) -> [String] {
        guard let syncFileRange = syncFileRange, let names = FileManager.default.enumerator(atPath: directory.path) else { return [] }
        let threshold = date.timeIntervalSince1970
        var started: [String] = []
        while let name = names.nextObject() as? String {
            let path = directory.path + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            guard modified >= threshold else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            if syncFileRange(fd, 0, 0, Self.syncFileRangeWrite) == 0 { started.append(name) }
            close(fd)
        }
        return started
    }

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
