public import OCPPCore

/// The pure decision taken on a charger's WebSocket upgrade request: who it is and which
/// OCPP version we speak with it, or why it is refused (before any byte of WebSocket).
public struct ChargerHandshake: Sendable {
    public struct Configuration: Sendable {
        /// The versions this server speaks, in order of preference.
        public var supportedVersions: [OCPPVersion]
        /// Whether a charger that offers no subprotocol at all is accepted, as this version.
        /// Many chargers in the field send no `Sec-WebSocket-Protocol`; OCPP-J says they should.
        public var versionWhenNoneOffered: OCPPVersion?

        public init(supportedVersions: [OCPPVersion] = [.ocpp16], versionWhenNoneOffered: OCPPVersion? = .ocpp16) {
            self.supportedVersions = supportedVersions
            self.versionWhenNoneOffered = versionWhenNoneOffered
        }
    }

    /// An accepted upgrade.
    public struct Accepted: Sendable, Equatable {
        public var identity: ChargePointIdentity
        /// The path as sent, without the query string.
        public var path: String
        public var query: [String: String]
        public var version: OCPPVersion
        /// The token to echo in `Sec-WebSocket-Protocol`, or nil when the charger offered none.
        public var subprotocolToEcho: String?
    }

    /// A refused upgrade: the HTTP status and a message for the person reading the charger's log.
    public struct Refusal: Error, Sendable, Equatable {
        public var status: Int
        public var message: String
        /// Extra response headers (e.g. `WWW-Authenticate` on a 401).
        public var headers: [String: String]

        public init(status: Int, message: String, headers: [String: String] = [:]) {
            self.status = status
            self.message = message
            self.headers = headers
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// Decides on one upgrade request.
    /// - Parameters:
    ///   - uri: the request target (`/some/path/CP-1?x=y`).
    ///   - offeredSubprotocols: every value of every `Sec-WebSocket-Protocol` header, unsplit.
    public func decide(uri: String, offeredSubprotocols: [String]) -> Result<Accepted, Refusal> {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = String(parts.first ?? "")
        let queryString = parts.count > 1 ? String(parts[1]) : nil
        let identity: ChargePointIdentity
        do {
            identity = try ChargePointIdentity.fromRequestPath(path)
        } catch {
            return .failure(Refusal(status: 400, message: error.description))
        }
        let offered = offeredSubprotocols
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        let version: OCPPVersion
        let echo: String?
        if offered.isEmpty {
            guard let fallback = configuration.versionWhenNoneOffered else {
                return .failure(Refusal(
                    status: 400,
                    message: "No WebSocket subprotocol was offered. Offer one of: \(supportedList) in Sec-WebSocket-Protocol."
                ))
            }
            version = fallback
            echo = nil
        } else {
            // Our preference order decides, as the server chooses among the offered tokens.
            guard let chosen = configuration.supportedVersions.first(where: { offered.contains($0.subprotocol) }) else {
                return .failure(Refusal(
                    status: 400,
                    message: "None of the offered subprotocols (\(offered.joined(separator: ", "))) is spoken here. Offer one of: \(supportedList)."
                ))
            }
            version = chosen
            echo = chosen.subprotocol
        }
        return .success(Accepted(
            identity: identity,
            path: path,
            query: ConnectionRecord.parseQuery(queryString),
            version: version,
            subprotocolToEcho: echo
        ))
    }

    private var supportedList: String {
        configuration.supportedVersions.map(\.subprotocol).joined(separator: ", ")
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

extension Set where Element == Character {
    fileprivate static let whitespaces: Set<Character> = [" ", "\t"]
}
