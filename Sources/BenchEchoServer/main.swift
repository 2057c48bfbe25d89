// chargepath-echo: the benchmark's ceiling. A bare OCPP-J "echo" on the same stack as Chargepath's
// charger gateway (NIO's HTTP/1 server, WebSocket upgrader and frame codec, with the WebSocket
// messages handled by a channel handler on the event loop, as `ChargerSocketHandler` does): it
// accepts any path, offers ocpp1.6, and answers every CALL `[2,"<id>",...]` with a constant
// CALLRESULT `{"currentTime":...}`, written in the same loop iteration that read it, with no task.
// It parses only the message id and compares the action's first bytes with three constants, so
// that simulated chargers can boot (BootNotification: Accepted) and charge (Authorize,
// StartTransaction: Accepted, transaction 1). It keeps no state and touches no disk.
//
// Until 2026-11-26 this was a Hummingbird 2 + hummingbird-websocket server (a task per socket and
// an async sequence per message); once Chargepath's own gateway dropped those, it answered
// heartbeats faster than that echo, which was then no ceiling (BENCHMARKS.md).
//
//   chargepath-echo [--host 127.0.0.1] [--port 9100] [--interval 300]
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

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

/// After the upgrade: whole messages (NIO's aggregator joins fragments) answered at once; pings
/// answered; a close echoed, then the connection closed. Writes are flushed once per read burst.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            guard let reply = answer(String(buffer: frame.unmaskedData)) else { return }
            let buffer = context.channel.allocator.buffer(string: reply)
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
        case .ping:
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

let upgrader = NIOWebSocketServerUpgrader(
    maxFrameSize: 65_536,
    shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(["Sec-WebSocket-Protocol": "ocpp1.6"]) },
    upgradePipelineHandler: { channel, _ in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: 65_536)
            )
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }
)
// What Chargepath's charger listener uses: backlog 4,096 (`--listen-backlog`), SO_REUSEADDR.
let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(ChannelOptions.backlog, value: 4096)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
    }
let listener = try await bootstrap.bind(host: host, port: port).get()
FileHandle.standardOutput.write(Data("chargepath-echo listening on ws://\(host):\(listener.localAddress?.port ?? port)/\n".utf8))
try await listener.closeFuture.get()
