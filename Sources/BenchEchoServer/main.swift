// chargepath-echo: the benchmark's ceiling. A bare OCPP-J "echo" on the same stack as Chargepath
// (Hummingbird 2 + NIO WebSocket): it accepts any path, offers ocpp1.6, and answers every CALL
// `[2,"<id>",...]` with a constant CALLRESULT `{"currentTime":...}`. It parses only the message id
// and compares the action's first bytes with three constants, so that simulated chargers can boot
// (BootNotification: Accepted) and charge (Authorize, StartTransaction: Accepted, transaction 1).
// It keeps no state and touches no disk.
//
//   chargepath-echo [--host 127.0.0.1] [--port 9100] [--interval 300]
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

var host = "127.0.0.1"
var port = 9100
var interval = 300
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--host": host = arguments.next() ?? host
    case "--port": port = arguments.next().flatMap(Int.init) ?? port
    case "--interval", "--heartbeat-interval": interval = arguments.next().flatMap(Int.init) ?? interval
    case "-h", "--help":
        print("usage: chargepath-echo [--host 127.0.0.1] [--port 9100] [--interval 300]")
        exit(0)
    default:
        FileHandle.standardError.write(Data("chargepath-echo: unknown argument \(argument)\n".utf8))
        exit(64)
    }
}

let currentTime = "2026-01-01T00:00:00Z"
let resultTail = #",{"currentTime":"\#(currentTime)"}]"#
let bootTail = #",{"status":"Accepted","currentTime":"\#(currentTime)","interval":\#(interval)}]"#
let authorizeTail = #",{"idTagInfo":{"status":"Accepted"}}]"#
let startTail = #",{"idTagInfo":{"status":"Accepted"},"transactionId":1}]"#
let bootAction = Array(#","BootNotification""#.utf8)
let authorizeAction = Array(#","Authorize""#.utf8)
let startAction = Array(#","StartTransaction""#.utf8)

/// `[2,"<id>","<Action>",...]` → the CALLRESULT text, or nil for anything that is not a CALL.
@Sendable func answer(_ text: String) -> String? {
    var utf8 = text.utf8[...]
    // Skip `[`, whitespace, `2`, `,` and the opening quote of the id (OCPP-J frames are compact,
    // but allow spaces).
    func skipSpaces() { while let c = utf8.first, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { utf8 = utf8.dropFirst() } }
    skipSpaces()
    guard utf8.first == UInt8(ascii: "[") else { return nil }
    utf8 = utf8.dropFirst(); skipSpaces()
    guard utf8.first == UInt8(ascii: "2") else { return nil }
    utf8 = utf8.dropFirst(); skipSpaces()
    guard utf8.first == UInt8(ascii: ",") else { return nil }
    utf8 = utf8.dropFirst(); skipSpaces()
    guard utf8.first == UInt8(ascii: "\"") else { return nil }
    utf8 = utf8.dropFirst()
    guard let end = utf8.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
    let id = Substring(text.utf8[utf8.startIndex..<end])
    let rest = text.utf8[text.utf8.index(after: end)...]
    let tail =
        if rest.starts(with: bootAction) { bootTail }
        else if rest.starts(with: authorizeAction) { authorizeTail }
        else if rest.starts(with: startAction) { startTail }
        else { resultTail }
    return #"[3,""# + id + #"""# + tail
}

var logger = Logger(label: "chargepath-echo")
logger.logLevel = .warning
let router = Router()
router.get("/health") { _, _ in "ok" }
let app = Application(
    router: router,
    server: .http1WebSocketUpgrade(configuration: .init(ws: .init(maxFrameSize: 65_536))) { _, _, _ in
        .upgrade([.secWebSocketProtocol: "ocpp1.6"]) { inbound, outbound, _ in
            for try await message in inbound.messages(maxSize: 65_536) {
                guard case .text(let text) = message, let reply = answer(text) else { continue }
                try await outbound.write(.text(reply))
            }
        }
    },
    configuration: .init(address: .hostname(host, port: port), serverName: nil),
    onServerRunning: { [host, port] channel in
        let line = "chargepath-echo listening on ws://\(host):\(channel.localAddress?.port ?? port)/\n"
        FileHandle.standardOutput.write(Data(line.utf8))
    },
    logger: logger
)
try await app.runService()
