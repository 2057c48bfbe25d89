import ChargepathPostgres
import Foundation
import Testing

/// The charger port's listen backlog (`--listen-backlog`, 4,096 by default): with Hummingbird's
/// 256, thousands of connection attempts were dropped in every 10,000-charger boot storm, each
/// retried by its charger only after 1 s (BENCHMARKS.md). Read back with `ss`, which prints a
/// listening socket's backlog as its Send-Q.
private let ssTool = ["/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"].first { FileManager.default.isExecutableFile(atPath: $0) }

@Suite(.timeLimit(.minutes(2)), .enabled(if: ssTool != nil, "needs ss (iproute2)"))
struct ListenBacklogTests {

    /// The backlog `ss` reports for the socket listening on `port` on 127.0.0.1.
    static func backlog(port: Int) throws -> Int? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(ssTool))
        process.arguments = ["-ltnH", "sport = :\(port)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // "LISTEN 0 4096 127.0.0.1:9000 0.0.0.0:*"
        let fields = output.split(whereSeparator: \.isWhitespace)
        guard fields.count >= 4, fields[0] == "LISTEN" else { return nil }
        return Int(fields[2])
    }

    @Test func theChargerPortListensWithTheConfiguredBacklog() async throws {
        let database = try await TestDatabase.shared.freshDatabase()
        let byDefault = try ServerProcess(database: database, ocppPort: try FreePort.find(), apiPort: try FreePort.find())
        defer { byDefault.kill() }
        try await byDefault.waitUntilReady()
        // 4,096, or less where the kernel's somaxconn caps it; never Hummingbird's 256.
        let somaxconn = (try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 4096
        #expect(try Self.backlog(port: byDefault.ocppPort) == min(4096, somaxconn))
        byDefault.kill()

        let configured = try ServerProcess(
            database: database, ocppPort: try FreePort.find(), apiPort: try FreePort.find(), extraArguments: ["--listen-backlog", "300"]
        )
        defer { configured.kill() }
        try await configured.waitUntilReady()
        #expect(try Self.backlog(port: configured.ocppPort) == 300)
    }
}
