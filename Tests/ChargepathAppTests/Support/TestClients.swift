import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization
import WSClient

/// Raw TCP on loopback: what a test needs to speak HTTP by hand (refused upgrades, plain HTTP).
enum RawTCP {
    /// Connects, runs `body` with the channel's streams, closes.
    static func withConnection<T: Sendable>(
        port: Int,
        _ body: (NIOAsyncChannelInboundStream<ByteBuffer>, NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(inbound, outbound)
        }
    }

    /// Sends `request` and reads until the server closes the connection.
    static func exchange(port: Int, _ request: String, timeout: Duration = TestTiming.wait) async throws -> String {
        try await withTimeout(timeout) {
            try await withConnection(port: port) { inbound, outbound in
                do {
                    try await outbound.write(ByteBuffer(string: request))
                } catch {
                    // A node that refuses at accept (a full port) answers and closes at once; its
                    // FIN can close this channel before the request goes out. Read what it sent.
                }
                var text = ""
                for try await var buffer in inbound {
                    text += buffer.readString(length: buffer.readableBytes) ?? ""
                }
                return text
            }
        }
    }

    /// A WebSocket upgrade request, by hand.
    static func upgradeRequest(path: String, subprotocols: [String]? = ["ocpp1.6"], extraHeaders: [String] = []) -> String {
        var lines = [
            "GET \(path) HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        ]
        if let subprotocols { lines.append("Sec-WebSocket-Protocol: \(subprotocols.joined(separator: ", "))") }
        lines += extraHeaders
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }
}

/// Fails with a clear error when `operation` takes longer than `timeout`.
func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TestFailure("timed out after \(timeout)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// A parsed HTTP/1.1 response.
struct TestHTTPResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: String

    init(parsing text: String) throws {
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("not an HTTP response: \(text.prefix(200))") }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1.1 "), let status = Int(statusLine.dropFirst(9).prefix(3)) else {
            throw TestFailure("bad status line in: \(text.prefix(200))")
        }
        self.status = status
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        var body = String(text[split.upperBound...])
        if headers["transfer-encoding"] == "chunked" {
            var decoded = ""
            var rest = Substring(body)
            while let lineEnd = rest.range(of: "\r\n"), let size = Int(rest[..<lineEnd.lowerBound], radix: 16), size > 0 {
                let start = lineEnd.upperBound
                let bytes = rest[start...].utf8.prefix(size)
                decoded += String(decoding: bytes, as: UTF8.self)
                rest = rest[rest.utf8.index(start, offsetBy: size)...].dropFirst(2)
            }
            body = decoded
        }
        self.body = body
    }
}

/// The operator API, spoken by hand over HTTP/1.1.
struct TestHTTPClient: Sendable {
    let port: Int
    let token: String?

    func request(_ method: String, _ path: String, body: String = "", authorization: String? = nil) async throws -> TestHTTPResponse {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let authorization {
            text += "Authorization: \(authorization)\r\n"
        } else if let token {
            text += "Authorization: Bearer \(token)\r\n"
        }
        text += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        return try TestHTTPResponse(parsing: try await RawTCP.exchange(port: port, text))
    }

    func json(_ method: String, _ path: String) async throws -> [String: Any] {
        let response = try await request(method, path)
        guard response.status == 200 else { throw TestFailure("\(method) \(path) answered \(response.status): \(response.body)") }
        guard let object = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any] else {
            throw TestFailure("not a JSON object: \(response.body)")
        }
        return object
    }
}

/// A WebSocket client standing in for a charger (the OCPP-level simulator comes later).
struct TestCharger: Sendable {
    let messages: AsyncStream<String>
    private let writer: WebSocketOutboundWriter
    private let closeFrame: CloseFrameBox
    private let closedSignal: AsyncStream<Void>

    func send(_ text: String) async throws {
        try await writer.writeTextMessage(text)
    }

    /// Waits until the server closes the socket; returns the close code it sent.
    func waitUntilClosed(timeout: Duration = TestTiming.wait) async throws -> WebSocketErrorCode? {
        let signal = closedSignal
        try await withTimeout(timeout) {
            for await _ in signal {}
        }
        return closeFrame.value.withLock { $0?.closeCode }
    }

    /// The next text message from the server.
    func next(timeout: Duration = TestTiming.wait) async throws -> String {
        let messages = messages
        return try await withTimeout(timeout) {
            guard let message = await messages.first(where: { _ in true }) else { throw TestFailure("the socket closed") }
            return message
        }
    }

    /// Connects to `url`, runs `body`, then closes normally (unless the server closed first).
    static func with<T: Sendable>(
        url: String,
        subprotocols: [String] = ["ocpp1.6"],
        headers: HTTPFields = [:],
        _ body: @Sendable (TestCharger) async throws -> T
    ) async throws -> T {
        let (messages, messagesContinuation) = AsyncStream.makeStream(of: String.self)
        let (ready, readyContinuation) = AsyncStream.makeStream(of: WebSocketOutboundWriter.self)
        let (stop, stopContinuation) = AsyncStream.makeStream(of: Void.self)
        let (closed, closedContinuation) = AsyncStream.makeStream(of: Void.self)
        let closeFrame = CloseFrameBox()
        var fields = headers
        if !subprotocols.isEmpty {
            fields[.secWebSocketProtocol] = subprotocols.joined(separator: ", ")
        }
        let configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 20, additionalHeaders: fields)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer {
                    messagesContinuation.finish()
                    readyContinuation.finish()
                    closedContinuation.finish()
                }
                let frame = try await WebSocketClient.connect(url: url, configuration: configuration, logger: TestDatabase.logger) { inbound, outbound, _ in
                    readyContinuation.yield(outbound)
                    try await withThrowingTaskGroup(of: Void.self) { connection in
                        connection.addTask {
                            for try await message in inbound.messages(maxSize: 1 << 20) {
                                if case .text(let text) = message { messagesContinuation.yield(text) }
                            }
                        }
                        connection.addTask {
                            for await _ in stop {}
                            try? await outbound.close(.normalClosure, reason: nil)
                        }
                        try await connection.next()
                        stopContinuation.finish()
                        try await connection.waitForAll()
                    }
                }
                closeFrame.value.withLock { $0 = frame }
            }
            guard let writer = await ready.first(where: { _ in true }) else {
                try await group.waitForAll()
                throw TestFailure("the WebSocket connection to \(url) failed")
            }
            let charger = TestCharger(writer: writer, messages: messages, closeFrame: closeFrame, closedSignal: closed)
            do {
                let result = try await body(charger)
                stopContinuation.finish()
                try await group.waitForAll()
                return result
            } catch {
                stopContinuation.finish()
                group.cancelAll()
                throw error
            }
        }
    }

    private init(writer: WebSocketOutboundWriter, messages: AsyncStream<String>, closeFrame: CloseFrameBox, closedSignal: AsyncStream<Void>) {
        self.writer = writer
        self.messages = messages
        self.closeFrame = closeFrame
        self.closedSignal = closedSignal
    }
}

final class CloseFrameBox: Sendable {
    let value = Mutex<WebSocketCloseFrame?>(nil)
}
