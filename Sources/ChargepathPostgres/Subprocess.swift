import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs short-lived commands (initdb, pg_ctl) without blocking a cooperative thread.
///
/// Not Foundation's `Process`: on Linux it learns that a child exited when a socket it shares with
/// the child is closed, and `pg_ctl start` leaves a server running that inherits that socket, so
/// the exit of `pg_ctl` is never noticed. This uses `posix_spawn` and polls `waitpid` instead.
struct Subprocess {
    struct Failure: Error, CustomStringConvertible {
        let command: String
        let status: Int32
        let output: String
        var description: String {
            "`\(command)` exited with status \(status): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
        }
    }

    /// Runs `executable arguments…`, returning its combined output, or throwing `Failure` on a non-zero exit.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> String {
        let command = ([executable] + arguments).joined(separator: " ")
        // Output goes to a temporary file, not a pipe that a daemonised grandchild could hold open.
        let outputPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("chargepath-subprocess-\(UInt64.random(in: 0 ... .max)).log").path
        defer { unlink(outputPath) }
        let pid = try spawn(executable, arguments, environment: environment, outputPath: outputPath, command: command)
        let status = try await waitForExit(pid)
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(command: command, status: status, output: output)
        }
        return output
    }

    /// Starts a command that outlives this call (the cluster watchdog), detached from our stdio.
    static func spawnDetached(_ executable: String, _ arguments: [String]) throws {
        let pid = try spawn(executable, arguments, environment: nil, outputPath: "/dev/null", command: executable)
        // Reap it whenever it ends, so it never lingers as a zombie of ours.
        Thread.detachNewThread {
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }

    private static func spawn(_ executable: String, _ arguments: [String], environment: [String: String]?, outputPath: String, command: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else is inherited: a cluster or watchdog that kept a copy of one of our sockets
        // would keep it open after we close it (a charger would never see its connection end).
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        } else {
            for fd in 3..<min(Int32(getdtablesize()), 65_536) where fcntl(fd, F_GETFD) != -1 {
                posix_spawn_file_actions_addclose(&actions, fd)
            }
        }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environmentList = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let envp = environmentList.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            throw Failure(command: command, status: -1, output: "could not start it: \(String(cString: strerror(result)))")
        }
        return pid
    }

    private static func waitForExit(_ pid: pid_t) async throws -> Int32 {
        var delay = Duration.milliseconds(5)
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                // WIFEXITED / WEXITSTATUS, spelled out (they are macros in C).
                let signal = status & 0x7f
                return signal == 0 ? (status >> 8) & 0xff : 128 + signal
            }
            if result == -1, errno != EINTR {
                throw Failure(command: "waitpid", status: -1, output: String(cString: strerror(errno)))
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .milliseconds(100))
        }
    }
}
