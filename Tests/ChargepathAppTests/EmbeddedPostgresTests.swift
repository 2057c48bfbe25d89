import Chargepath
@testable import ChargepathPostgres
import Foundation
import Testing

/// The embedded cluster's life around `chargepath serve` restarts: each server process starts
/// (or adopts) the cluster and leaves a watchdog that stops it when that process is gone.
@Suite(.timeLimit(.minutes(3))) struct EmbeddedPostgresTests {
    /// Whether the cluster answers a query. Bounded: a connection the cluster ends while it shuts
    /// down can leave PostgresNIO's connect or close waiting for good (a full test run hung so).
    static func answers(_ endpoint: DatabaseEndpoint) async -> Bool {
        (try? await withTimeLimit(.seconds(5)) { try await TestDatabase.execute("SELECT 1", on: endpoint) }) != nil
    }

    /// A server stopped and started again at once (a service manager's restart): the old
    /// process's watchdog, noticing its exit up to a second later, must not stop the cluster the
    /// new process has just started. It did, and the new server ran without its database.
    @Test func aServerRestartedAtOnceKeepsItsDatabaseWhenTheOldProcessWatchdogFires() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("chargepath-tests-embedded-\(UInt32.random(in: 0 ... .max))", isDirectory: true)
        // Stand-ins for the two server processes, whose exits the watchdogs watch.
        let oldServer = try ChildProcess.spawn("/bin/sleep", ["600"])
        let newServer = try ChildProcess.spawn("/bin/sleep", ["600"])
        let first = EmbeddedPostgres(
            configuration: .init(dataDirectory: directory, stopWhenProcessExits: oldServer.pid), logger: TestDatabase.logger)
        let second = EmbeddedPostgres(
            configuration: .init(dataDirectory: directory, stopWhenProcessExits: newServer.pid), logger: TestDatabase.logger)
        defer {
            oldServer.kill()
            newServer.kill()
        }
        do {
            _ = try await first.start()
            try await first.stop()  // the old server's clean shutdown
            let endpoint = try await second.start().databaseEndpoint
            #expect(await Self.answers(endpoint), "the restarted cluster answers")

            oldServer.kill()  // the old process is gone (and reaped): its watchdog fires within a second
            try await Task.sleep(for: .seconds(3))
            #expect(await Self.answers(endpoint), "the old server's watchdog stopped the new server's cluster")

            newServer.kill()  // the new server is gone: its watchdog stops the cluster it started
            try await eventually(timeout: .seconds(20), "the cluster stops after the process that started it exits") {
                await !Self.answers(endpoint)
            }
            // Stopped for good (it refuses connections a moment before its last files are written).
            let pidFile = directory.appendingPathComponent("postgres/postmaster.pid").path
            try await eventually(timeout: .seconds(20), "the postmaster exits") { !FileManager.default.fileExists(atPath: pidFile) }
        } catch {
            try? await second.stop()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// `swift run chargepath serve` by root in a clone inside a folder closed to others (`/root`,
    /// `mktemp -d`): the cluster's user could not reach the data directory and the server stopped
    /// with an error. Now the cluster goes where that user can reach it, and the rest stays.
    @Test func rootsDataDirectoryInAClosedFolderStillGetsItsDatabase() async throws {
        let closed = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("chargepath-tests-closed-\(UInt32.random(in: 0 ... .max))", isDirectory: true)
        try FileManager.default.createDirectory(at: closed, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let directory = closed.appendingPathComponent(".chargepath", isDirectory: true)
        let postgres = EmbeddedPostgres(configuration: .init(dataDirectory: directory), logger: TestDatabase.logger)
        let cluster = postgres.clusterDirectory  // decided while the closed folder exists
        defer {
            try? FileManager.default.removeItem(at: closed)
            try? FileManager.default.removeItem(at: cluster)
            try? FileManager.default.removeItem(at: EmbeddedPostgres.ownerFile(of: cluster))
        }
        do {
            let endpoint = try await postgres.start().databaseEndpoint
            #expect(await Self.answers(endpoint))
            if geteuid() == 0 {
                #expect(postgres.clusterIsElsewhere)
                #expect(postgres.clusterDirectory.path.hasPrefix(EmbeddedPostgres.fallbackClusters.path))
                #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("postgres").path))
            } else {
                #expect(!postgres.clusterIsElsewhere)
            }
            // The password and port stay in the data directory: a second start finds the same cluster.
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("postgres.password").path))
            try await postgres.stop()
            let again = try await postgres.start().databaseEndpoint
            #expect(again.port == endpoint.port)
            #expect(await Self.answers(again))
            try await postgres.stop()
        } catch {
            try? await postgres.stop()
            throw error
        }
    }

    /// A data directory whose cluster lives in `fallbackClusters` (root, a folder closed to others)
    /// and that is moved, as a clone is renamed: its cluster was found by the data directory's
    /// path, so the next start made a new, empty cluster and the database seemed gone. Now the data
    /// directory names its cluster (`postgres.cluster`) and keeps it.
    @Test func aMovedDataDirectoryKeepsItsDatabase() async throws {
        let closed = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("chargepath-tests-moved-\(UInt32.random(in: 0 ... .max))", isDirectory: true)
        try FileManager.default.createDirectory(at: closed, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let before = closed.appendingPathComponent("clone/.chargepath", isDirectory: true)
        let after = closed.appendingPathComponent("renamed-clone/.chargepath", isDirectory: true)
        let first = EmbeddedPostgres(configuration: .init(dataDirectory: before), logger: TestDatabase.logger)
        let cluster = first.clusterDirectory
        defer {
            try? FileManager.default.removeItem(at: closed)
            try? FileManager.default.removeItem(at: cluster)
            try? FileManager.default.removeItem(at: EmbeddedPostgres.ownerFile(of: cluster))
        }
        let second = EmbeddedPostgres(configuration: .init(dataDirectory: after), logger: TestDatabase.logger)
        do {
            let endpoint = try await first.start().databaseEndpoint
            try await TestDatabase.execute("CREATE TABLE kept (x integer)", on: endpoint)
            try await first.stop()
            try FileManager.default.moveItem(at: closed.appendingPathComponent("clone"), to: closed.appendingPathComponent("renamed-clone"))

            let again = try await second.start().databaseEndpoint
            #expect(second.clusterDirectory.path == cluster.path)
            #expect(again.port == endpoint.port)
            // Throws on a new cluster, where the table does not exist.
            try await TestDatabase.execute("SELECT x FROM kept", on: again)
            if geteuid() == 0 {
                // The cluster now records its data directory's new path: it is nobody's orphan.
                #expect(!EmbeddedPostgres.orphanedClusters().contains { $0.cluster.path == cluster.path })
            }
            try await second.stop()
        } catch {
            try? await first.stop()
            try? await second.stop()
            throw error
        }
    }

    /// A cluster the server creates makes its new WAL segments without writing them full of zeros
    /// first: that 16 MB write and flush, while every commit waited, came every few seconds under a
    /// fleet's meter readings (DEVELOPERS.md).
    @Test(.enabled(if: (ProcessInfo.processInfo.environment["TEST_DATABASE_URL"] ?? "").isEmpty, "the tests' cluster is embedded"))
    func aNewClusterDoesNotZeroFillItsWALSegments() async throws {
        let endpoint = try await TestDatabase.shared.serverEndpoint()
        try await TestDatabase.execute(
            """
            DO $$ BEGIN
                IF current_setting('wal_init_zero') <> 'off' THEN
                    RAISE EXCEPTION 'wal_init_zero is %, expected off', current_setting('wal_init_zero');
                END IF;
            END $$
            """, on: endpoint.with(database: "postgres"))
    }

    /// Clusters of `fallbackClusters` whose data directory is gone, or names another cluster, are
    /// reported at start (with the data directory each was made for); the one in use is not.
    @Test func clustersWhoseDataDirectoryIsGoneAreReportedAsOrphans() throws {
        let fileManager = FileManager.default
        let root = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("chargepath-tests-orphans-\(UInt32.random(in: 0 ... .max))", isDirectory: true)
        defer { try? fileManager.removeItem(at: root) }
        let clusters = root.appendingPathComponent("clusters", isDirectory: true)
        let inUse = root.appendingPathComponent("in-use", isDirectory: true)
        for name in ["a", "b", "c"] {
            try fileManager.createDirectory(at: clusters.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        try fileManager.createDirectory(at: inUse, withIntermediateDirectories: true)
        func write(_ text: String, _ url: URL) throws { try Data((text + "\n").utf8).write(to: url) }
        try write(clusters.appendingPathComponent("a").path, inUse.appendingPathComponent("postgres.cluster"))
        try write(inUse.path, clusters.appendingPathComponent("a.data-directory"))  // in use
        try write(root.appendingPathComponent("deleted-clone").path, clusters.appendingPathComponent("b.data-directory"))  // gone
        try write(inUse.path, clusters.appendingPathComponent("c.data-directory"))  // its data directory names another cluster
        try write(inUse.path, clusters.appendingPathComponent("d.data-directory"))  // no cluster left: nothing to report

        let orphans = EmbeddedPostgres.orphanedClusters(in: clusters)
        #expect(orphans.map(\.cluster.lastPathComponent) == ["b", "c"])
        #expect(orphans.first?.dataDirectory == root.appendingPathComponent("deleted-clone").path)
    }

    /// A free port comes from below the kernel's ephemeral range, where no outgoing connection
    /// can take it as its local port before its listener binds it; and it is free.
    @Test func aFreePortIsBelowTheEphemeralRangeAndBindable() throws {
        let low = FreePort.ephemeralRangeLow()
        try #require(low > 10_000, "this machine's ephemeral range starts at \(low)")
        for _ in 0..<20 {
            let port = try FreePort.find()
            #expect((10_000..<low).contains(port), "\(port)")
            // A process another test spawns at that moment holds a copy of the probe socket from
            // its fork to its exec (close-on-exec closes it only then): the port is busy for that
            // instant, then free. Failed 1 run in 4 with a single attempt, the suite's clusters
            // starting alongside.
            var bindable = false
            for attempt in 0..<10 where !bindable {
                if attempt > 0 { usleep(20_000) }
                bindable = try FreePort.bindable(port)
            }
            #expect(bindable, "\(port) stayed busy for 180 ms")
        }
    }
}
