import Crypto
public import Foundation
public import Logging

/// A private PostgreSQL cluster that Chargepath runs for itself when no database is configured.
///
/// The cluster lives under `<dataDirectory>/postgres`, listens on 127.0.0.1 only, and uses
/// password authentication with a random password kept in `<dataDirectory>/postgres.password`
/// (mode 0600). PostgreSQL refuses to run as root, so a root process runs the cluster as the
/// `postgres` system user through `runuser`. That user cannot reach a data directory inside a
/// folder closed to others (`/root`, or one made by `mktemp -d`, both mode 0700): a root process
/// then keeps the cluster in `fallbackClusters`, in a folder named after the data directory's
/// path, and everything else in the data directory as usual, with `postgres.cluster` naming the
/// cluster (so a moved data directory keeps it). Clusters there whose data directory is gone are
/// listed at start, not deleted.
public struct EmbeddedPostgres: Sendable {
    public struct Configuration: Sendable {
        /// Chargepath's data directory (`--data-dir`); the cluster goes into its `postgres` folder.
        public var dataDirectory: URL
        /// The port to listen on when the cluster is created; `nil` picks a free one.
        public var port: Int?
        /// Stop the cluster when the process with this pid exits, even if it is killed (a watchdog).
        public var stopWhenProcessExits: Int32?
        /// Delete the data directory too once that process exits (for throwaway test clusters).
        public var removeWhenProcessExits: Bool = false
        /// The system user that runs the cluster when we are root.
        public var systemUserWhenRoot: String
        /// PostgreSQL's max_connections, set when the cluster is created.
        public var maxConnections: Int

        public init(dataDirectory: URL, port: Int? = nil, stopWhenProcessExits: Int32? = nil, systemUserWhenRoot: String = "postgres",
                    maxConnections: Int = 200) {
            self.dataDirectory = dataDirectory
            self.port = port
            self.stopWhenProcessExits = stopWhenProcessExits
            self.systemUserWhenRoot = systemUserWhenRoot
            self.maxConnections = maxConnections
        }
    }

    /// How to reach a running embedded cluster.
    public struct Endpoint: Sendable {
        public let host: String
        public let port: Int
        public let username: String
        public let password: String
        public let database: String
    }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    public let configuration: Configuration
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    static let username = "chargepath"
    static let database = "chargepath"

    /// The cluster the data directory's `postgres.cluster` names, if it is one of `fallbackClusters`
    /// and exists; otherwise `<dataDirectory>/postgres`, or, when we are root and the cluster's user
    /// cannot pass through every folder on the data directory's path, a folder of
    /// `fallbackClusters` named after that path. The recorded name comes first so that a data
    /// directory that moved (its path, so its folder's name, changed) or whose folders were opened
    /// to others keeps its database: before, it silently got a new, empty cluster.
    var clusterDirectory: URL {
        if let recorded = recordedCluster { return recorded }
        guard clusterIsElsewhere else { return configuration.dataDirectory.appendingPathComponent("postgres", isDirectory: true) }
        let digest = Insecure.MD5.hash(data: Data(resolvedDataDirectoryPath.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return Self.fallbackClusters.appendingPathComponent(digest, isDirectory: true)
    }

    /// Whether the cluster lives in `fallbackClusters` (see `clusterDirectory`).
    var clusterIsElsewhere: Bool {
        recordedCluster != nil || (runsAsRoot && !Self.othersCanPass(toward: configuration.dataDirectory))
    }

    /// Where a root process keeps the clusters of data directories the cluster's user cannot reach.
    static let fallbackClusters = URL(fileURLWithPath: "/var/lib/chargepath/clusters", isDirectory: true)

    /// `<dataDirectory>/postgres.cluster`: the folder of `fallbackClusters` that holds this data
    /// directory's cluster (written when it is created there, and at each start).
    var clusterPointerFile: URL { configuration.dataDirectory.appendingPathComponent(Self.clusterPointerName) }
    static let clusterPointerName = "postgres.cluster"

    /// The data directory's path, symbolic links resolved: what names its fallback cluster, and
    /// what that cluster's owner file records.
    var resolvedDataDirectoryPath: String { configuration.dataDirectory.standardizedFileURL.resolvingSymlinksInPath().path }

    /// Beside a cluster of `fallbackClusters` (`<name>.data-directory`): the path of the data
    /// directory it belongs to, rewritten at each start, so that a cluster whose data directory
    /// is gone can be told from one in use.
    static func ownerFile(of cluster: URL) -> URL {
        cluster.deletingLastPathComponent().appendingPathComponent(cluster.lastPathComponent + ownerSuffix)
    }
    static let ownerSuffix = ".data-directory"

    var recordedCluster: URL? {
        guard let text = try? String(contentsOf: clusterPointerFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            !text.isEmpty
        else { return nil }
        let cluster = URL(fileURLWithPath: text, isDirectory: true).standardizedFileURL
        guard cluster.deletingLastPathComponent().path == Self.fallbackClusters.standardizedFileURL.path,
            FileManager.default.fileExists(atPath: cluster.appendingPathComponent("PG_VERSION").path)
        else { return nil }
        return cluster
    }

    /// Records, both ways, that the cluster in `fallbackClusters` belongs to this data directory.
    func recordFallbackCluster() throws {
        guard clusterIsElsewhere else { return }
        let cluster = clusterDirectory
        try Data((cluster.path + "\n").utf8).write(to: clusterPointerFile, options: .atomic)
        try Data((resolvedDataDirectoryPath + "\n").utf8).write(to: Self.ownerFile(of: cluster), options: .atomic)
    }

    /// The clusters of `fallbackClusters` whose data directory no longer names them (it was
    /// deleted, or moved and then started elsewhere), with the data directory each was made for.
    /// They are reported, not deleted: a data directory moved and not started since still names
    /// its cluster, from a path nobody can guess.
    static func orphanedClusters(in folder: URL = fallbackClusters) -> [(cluster: URL, dataDirectory: String)] {
        let fileManager = FileManager.default
        guard let names = try? fileManager.contentsOfDirectory(atPath: folder.path) else { return [] }
        return names.sorted().compactMap { name in
            guard name.hasSuffix(ownerSuffix) else { return nil }
            let cluster = folder.appendingPathComponent(String(name.dropLast(ownerSuffix.count)), isDirectory: true)
            guard fileManager.fileExists(atPath: cluster.path),
                let owner = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            else { return nil }
            let pointer = URL(fileURLWithPath: owner, isDirectory: true).appendingPathComponent(clusterPointerName)
            let named = (try? String(contentsOf: pointer, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            guard named.map({ URL(fileURLWithPath: $0).standardizedFileURL.path }) != cluster.standardizedFileURL.path else { return nil }
            return (cluster, owner)
        }
    }

    /// Whether every existing folder on the way to `directory` (itself included) lets others pass
    /// (o+x). The cluster's user is one of the others to a root process's folders.
    static func othersCanPass(toward directory: URL) -> Bool {
        var url = directory.standardizedFileURL.resolvingSymlinksInPath()
        while true {
            var info = stat()
            if stat(url.path, &info) == 0, info.st_mode & S_IXOTH == 0 { return false }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { return true }
            url = parent
        }
    }
    var passwordFile: URL { configuration.dataDirectory.appendingPathComponent("postgres.password") }
    var portFile: URL { configuration.dataDirectory.appendingPathComponent("postgres.port") }
    var logFile: URL { clusterDirectory.appendingPathComponent("server.log") }
    /// The cluster's databases' data files (its `base` folder).
    public var dataFilesDirectory: URL { clusterDirectory.appendingPathComponent("base", isDirectory: true) }

    var runsAsRoot: Bool { geteuid() == 0 }

    /// Creates the cluster on first use, starts it (or adopts one already running from an earlier,
    /// killed process), and returns where to connect.
    public func start() async throws -> Endpoint {
        let tools = try Self.findTools()
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: configuration.dataDirectory, withIntermediateDirectories: true)
        let versionFile = clusterDirectory.appendingPathComponent("PG_VERSION")
        let created = !fileManager.fileExists(atPath: versionFile.path)
        if created {
            // Leaves the new cluster running.
            try await initialize(tools: tools)
        }
        guard let password = try? String(contentsOf: passwordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            let portText = try? String(contentsOf: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            let port = Int(portText)
        else {
            throw Error(description: "The embedded PostgreSQL in \(clusterDirectory.path) has no password or port file; remove \(clusterDirectory.path) to create a new cluster.")
        }
        if created {
            logger.info("Started the new embedded PostgreSQL", metadata: ["db.port": "\(port)"])
        } else if try await isRunning(tools: tools) {
            logger.info("Adopting the embedded PostgreSQL that is already running", metadata: ["db.port": "\(port)"])
        } else {
            logger.info("Starting the embedded PostgreSQL", metadata: ["db.data_dir": "\(clusterDirectory.path)", "db.port": "\(port)"])
            // A stale postmaster.pid from a killed cluster is handled by PostgreSQL itself.
            try await runAsClusterUser(tools.pgCtl, ["-D", clusterDirectory.path, "-l", logFile.path, "-w", "-t", "120", "start"])
        }
        if clusterIsElsewhere {
            try recordFallbackCluster()
            let orphans = Self.orphanedClusters()
            if !orphans.isEmpty {
                logger.notice(
                    "Embedded PostgreSQL clusters whose data directory is gone; remove them if nothing of theirs is needed",
                    metadata: ["db.orphaned_clusters": .array(orphans.map { "\($0.cluster.path) (made for \($0.dataDirectory))" })])
            }
        }
        if let pid = configuration.stopWhenProcessExits {
            try startWatchdog(tools: tools, pid: pid)
        }
        return Endpoint(host: "127.0.0.1", port: port, username: Self.username, password: password, database: Self.database)
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, committed data is safe).
    public func stop() async throws {
        let tools = try Self.findTools()
        guard try await isRunning(tools: tools) else { return }
        try await runAsClusterUser(tools.pgCtl, ["-D", clusterDirectory.path, "-m", "fast", "-w", "-t", "60", "stop"])
        logger.info("Stopped the embedded PostgreSQL")
    }

    func isRunning(tools: Tools) async throws -> Bool {
        do {
            try await runAsClusterUser(tools.pgCtl, ["-D", clusterDirectory.path, "status"])
            return true
        } catch is Subprocess.Failure {
            return false
        }
    }

    func initialize(tools: Tools) async throws {
        let fileManager = FileManager.default
        logger.info("Creating the embedded PostgreSQL cluster", metadata: ["db.data_dir": "\(clusterDirectory.path)"])
        // A half-made cluster from an interrupted first start would make initdb refuse: start over.
        if fileManager.fileExists(atPath: clusterDirectory.path) {
            try fileManager.removeItem(at: clusterDirectory)
        }
        if clusterIsElsewhere {
            logger.info("The cluster's user cannot reach the data directory; the cluster goes elsewhere",
                        metadata: ["db.data_dir": "\(configuration.dataDirectory.path)", "db.cluster_dir": "\(clusterDirectory.path)"])
            try fileManager.createDirectory(at: clusterDirectory.deletingLastPathComponent(), withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o755])
        }
        try fileManager.createDirectory(at: clusterDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let password = Self.randomPassword()
        let port = try configuration.port ?? FreePort.find()
        // initdb reads the superuser's password from a file the cluster user can read; it is removed afterwards.
        // (Next to the cluster, not in it: initdb wants an empty directory.)
        let initPasswordFile = clusterDirectory.deletingLastPathComponent().appendingPathComponent(".initdb-password-\(clusterDirectory.lastPathComponent)")
        fileManager.createFile(atPath: initPasswordFile.path, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600])
        if runsAsRoot {
            try await Subprocess.run("/bin/chown", ["-R", configuration.systemUserWhenRoot, clusterDirectory.path, initPasswordFile.path])
            do {
                try await Subprocess.run("/usr/sbin/runuser", ["-u", configuration.systemUserWhenRoot, "--", "test", "-w", clusterDirectory.path])
            } catch {
                throw Error(description: "PostgreSQL cannot run as root, and the '\(configuration.systemUserWhenRoot)' user cannot reach \(clusterDirectory.path). Choose a --data-dir that user can reach (its parent folders need o+x), e.g. under /var/lib or /tmp.")
            }
        }
        do {
            try await runAsClusterUser(tools.initdb, [
                "-D", clusterDirectory.path, "-U", Self.username, "--pwfile", initPasswordFile.path,
                "-E", "UTF8", "--locale", "C", "--auth-host", "scram-sha-256", "--auth-local", "scram-sha-256",
            ])
        } catch {
            try? fileManager.removeItem(at: initPasswordFile)
            throw error
        }
        try? fileManager.removeItem(at: initPasswordFile)
        // A new WAL segment is created with its last byte only, not written full of zeros and
        // flushed (16 MB) while every commit waits: until a checkpoint has left segments to
        // recycle, a fleet storing readings needs a new one every few seconds (DEVELOPERS.md).
        // The setting exists from PostgreSQL 12 on; an older server would refuse to start with it.
        let major = (try? String(contentsOf: clusterDirectory.appendingPathComponent("PG_VERSION"), encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").first ?? "") } ?? 0
        let walInitZero = major >= 12 ? "wal_init_zero = off\n" : ""
        let settings = """

            # Chargepath's embedded cluster: loopback only, no Unix socket.
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = ''
            max_connections = \(configuration.maxConnections)
            shared_buffers = 256MB
            logging_collector = off
            \(walInitZero)
            """
        let conf = clusterDirectory.appendingPathComponent("postgresql.conf")
        let handle = try FileHandle(forWritingTo: conf)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(settings.utf8))
        try handle.close()
        try Data(password.utf8).write(to: passwordFile)
        try fileManager.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile.path)
        try Data(String(port).utf8).write(to: portFile)
        // The database Chargepath uses, created over a short-lived start.
        try await runAsClusterUser(tools.pgCtl, ["-D", clusterDirectory.path, "-l", logFile.path, "-w", "-t", "120", "start"])
        do {
            try await Subprocess.run(
                tools.psql,
                ["-h", "127.0.0.1", "-p", String(port), "-U", Self.username, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q",
                 "-c", "CREATE DATABASE \(Self.database)"],
                environment: ["PGPASSWORD": password, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
            )
        } catch {
            _ = try? await runAsClusterUser(tools.pgCtl, ["-D", clusterDirectory.path, "-m", "fast", "-w", "stop"])
            throw error
        }
    }

    /// A tiny shell loop that stops the cluster once `pid` is gone.
    /// It watches `/proc/<pid>` because a signal test (`kill -0`) fails across users.
    /// It stops only the postmaster that was running when it began (the first line of
    /// `postmaster.pid`): a server restarted on the same data directory within the loop's second
    /// has started a new postmaster, which the old process's watchdog must leave alone.
    /// With `removeWhenProcessExits`, it then deletes the whole data directory (a throwaway cluster).
    func startWatchdog(tools: Tools, pid: Int32) throws {
        let pidFile = clusterDirectory.appendingPathComponent("postmaster.pid").path
        guard let postmaster = Self.postmasterPID(pidFile: pidFile) else {
            throw Error(description: "The embedded PostgreSQL in \(clusterDirectory.path) is running but has no readable postmaster.pid; stop it with pg_ctl and start again.")
        }
        let stop = "'\(tools.pgCtl)' -D '\(clusterDirectory.path)' -m fast -w stop"
        // The loop runs as us; the stop as the cluster's user (PostgreSQL refuses root).
        let stopAsClusterUser = runsAsRoot ? "/usr/sbin/runuser -u \(configuration.systemUserWhenRoot) -- \(stop)" : stop
        var script = "while [ -d /proc/\(pid) ]; do sleep 1; done; "
            + "if [ \"$(head -n 1 '\(pidFile)' 2>/dev/null)\" = '\(postmaster)' ]; then \(stopAsClusterUser); fi"
        if configuration.removeWhenProcessExits {
            script += "; rm -rf '\(configuration.dataDirectory.path)' '\(clusterDirectory.path)'"
            if clusterIsElsewhere { script += " '\(Self.ownerFile(of: clusterDirectory).path)'" }
        }
        try Subprocess.spawnDetached("/usr/bin/setsid", ["/bin/sh", "-c", script])
    }

    /// The postmaster's process id: the first line of its `postmaster.pid`.
    static func postmasterPID(pidFile: String) -> Int32? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let first = text.split(separator: "\n", maxSplits: 1).first
        else { return nil }
        return Int32(first.trimmingCharacters(in: .whitespaces))
    }

    @discardableResult
    func runAsClusterUser(_ executable: String, _ arguments: [String]) async throws -> String {
        if runsAsRoot {
            return try await Subprocess.run("/usr/sbin/runuser", ["-u", configuration.systemUserWhenRoot, "--", executable] + arguments)
        }
        return try await Subprocess.run(executable, arguments)
    }

    struct Tools {
        let initdb: String
        let pgCtl: String
        let psql: String
    }

    /// Finds PostgreSQL's programs on PATH, then in Debian's versioned folders (newest first).
    static func findTools() throws -> Tools {
        let fileManager = FileManager.default
        var directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        if let versions = try? fileManager.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            let sorted = versions.compactMap { Int($0) }.sorted(by: >)
            directories += sorted.map { "/usr/lib/postgresql/\($0)/bin" }
        }
        func find(_ name: String) -> String? {
            directories.lazy.map { "\($0)/\(name)" }.first { fileManager.isExecutableFile(atPath: $0) }
        }
        guard let initdb = find("initdb"), let pgCtl = find("pg_ctl"), let psql = find("psql") else {
            throw Error(description: "PostgreSQL's initdb, pg_ctl and psql were not found on PATH or in /usr/lib/postgresql/*/bin. Install PostgreSQL (on Debian: apt-get install postgresql-15), or pass --database-url to use a server you run.")
        }
        return Tools(initdb: initdb, pgCtl: pgCtl, psql: psql)
    }

    static func randomPassword() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet.randomElement(using: &generator)! })
    }
}

/// Finds a TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's range of
/// ephemeral ports when it can: a port the kernel picked from that range (bind to port 0) can be
/// handed out again as the local port of any outgoing connection before its listener binds it
/// ("Address already in use": a test's child server, once in a full run, 2026-11-27), and the
/// embedded cluster's port is bound again at every start.
public enum FreePort {
    public static func find() throws -> Int {
        let ephemeralLow = ephemeralRangeLow()
        if ephemeralLow > 10_000 {
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<200 {
                let port = Int.random(in: 10_000..<ephemeralLow, using: &generator)
                if try bindable(port) { return port }
            }
        }
        return try bound(to: 0)
    }

    /// The low end of `net.ipv4.ip_local_port_range` (32768 when it cannot be read).
    static func ephemeralRangeLow() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap({ Int($0) })
        else { return 32_768 }
        return low
    }

    static func bindable(_ port: Int) throws -> Bool {
        do {
            return try bound(to: port) == port
        } catch is BindFailed {
            return false
        }
    }

    struct BindFailed: Error {}

    /// Binds a socket to `port` on 127.0.0.1 (0: any), closes it, and returns the port it had.
    static func bound(to port: Int) throws -> Int {
        // Close-on-exec: a process another thread starts meanwhile must not inherit the socket and
        // keep the port bound after we close it (a full test run, starting clusters in parallel,
        // found a port just checked to be free that could not be bound again, 2 times in 20).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EmbeddedPostgres.Error(description: "Could not open a socket to find a free port (errno \(errno)).") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else {
            if port != 0 { throw BindFailed() }
            throw EmbeddedPostgres.Error(description: "Could not bind a socket to find a free port (errno \(errno)).")
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
