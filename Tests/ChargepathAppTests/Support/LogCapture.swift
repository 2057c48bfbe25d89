import Logging
import Synchronization

/// A log handler that keeps messages, for tests that check what the server says.
struct LogCapture: LogHandler {
    final class Storage: Sendable {
        let lines = Mutex<[String]>([])
    }

    let storage = Storage()
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    var messages: [String] { storage.lines.withLock { $0 } }

    func log(event: LogEvent) {
        let extra = (event.metadata ?? [:]).map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        storage.lines.withLock { $0.append("\(event.message) \(extra)") }
    }
}
