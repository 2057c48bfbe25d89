@testable import ChargepathPostgres
import Foundation
import Testing

@Suite("Writeback pacer")
struct WritebackPacerTests {
    /// A pass starts the writeback of the files written since the last pass, in every database's
    /// folder, and leaves older files alone (their pages are clean or the kernel's).
    @Test func startsTheWritebackOfRecentlyWrittenFilesOnly() throws {
        #if os(Linux)
        let fileManager = FileManager.default
        let base = fileManager.temporaryDirectory.appendingPathComponent("chargepath-pacer-\(UUID().uuidString)")
        let database = base.appendingPathComponent("16384")
        try fileManager.createDirectory(at: database, withIntermediateDirectories: true)
        defer { try? fileManager.removeItem(at: base) }
        let untouched = database.appendingPathComponent("1259")
        let growing = database.appendingPathComponent("16500")
        let top = base.appendingPathComponent("pg_filenode.map")
        for file in [untouched, growing, top] { try Data(repeating: 7, count: 256 * 1024).write(to: file) }
        try fileManager.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: untouched.path)

        let started = WritebackPacer.startWriteback(in: base, modifiedSince: Date(timeIntervalSinceNow: -60))
        #expect(Set(started) == ["16384/16500", "pg_filenode.map"])
        #expect(WritebackPacer.startWriteback(in: base, modifiedSince: Date(timeIntervalSinceNow: 60)).isEmpty)
        #expect(WritebackPacer.startWriteback(in: base.appendingPathComponent("missing"), modifiedSince: .distantPast).isEmpty)
        #endif
    }
}
