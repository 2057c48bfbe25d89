public import Chargepath
import Crypto
import Foundation
public import Logging

/// Decides, before the WebSocket upgrade, whether an identity may connect: unknown chargers
/// (accepted or refused with 404, per `--unknown-chargers`) and OCPP security profile 1
/// (HTTP Basic auth with the charge point's password; 401 without it).
public struct ChargerAdmission: Sendable {
    public enum UnknownChargers: String, Sendable, CaseIterable {
        /// Any identity may connect (the development default).
        case accept
        /// Only charge points an operator registered may connect.
        case reject
    }

    let store: any ManagementStore
    let unknownChargers: UnknownChargers
    let logger: Logger

    public init(store: any ManagementStore, unknownChargers: UnknownChargers, logger: Logger) {
        self.store = store
        self.unknownChargers = unknownChargers
        self.logger = logger
    }

    /// nil admits the charger; otherwise the refusal to answer with.
    func admit(identity: ChargePointIdentity, authorization: String?) async -> ChargerHandshake.Refusal? {
        let credentials: ChargePointCredentials?
        do {
            credentials = try await store.credentials(of: identity.id)
        } catch {
            logger.error("Could not check a charger's registration; refusing it for now", metadata: ["ocpp.charge_point": "\(identity)", "error": "\(error)"])
            return .init(status: 503, message: "The central system cannot check this charge point right now; reconnect later.")
        }
        if credentials?.registered != true, unknownChargers == .reject {
            return .init(status: 404, message: "Unknown charge point '\(identity)': an operator must register it first (PUT /api/v1/charge-points/{id}).")
        }
        guard let hash = credentials?.passwordHash else { return nil }
        guard let authorization, let password = Self.basicPassword(authorization, identity: identity.id) else {
            return .init(
                status: 401,
                message: "This charge point needs HTTP Basic authentication: Authorization: Basic base64(<chargePointId>:<password>).",
                headers: ["WWW-Authenticate": #"Basic realm="Chargepath", charset="UTF-8""#]
            )
        }
        guard ChargerPassword.verify(password, against: hash) else {
            logger.warning("A charger offered a wrong password", metadata: ["ocpp.charge_point": "\(identity)"])
            return .init(status: 401, message: "Wrong password for this charge point.", headers: ["WWW-Authenticate": #"Basic realm="Chargepath""#])
        }
        return nil
    }

    /// The password from `Basic base64(identity:password)`, when the user part is this identity.
    static func basicPassword(_ header: String, identity: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else { return nil }
        guard text[..<colon] == identity else { return nil }
        return String(text[text.index(after: colon)...])
    }
}

/// Salted password hashes for charger Basic auth.
///
/// OCPP security profile 1 passwords are 16 to 40 random characters set by the CSMS, so a salted
/// HMAC-SHA256 is enough to keep a stolen table useless, and cheap enough that a boot storm of
/// thousands of chargers is not slowed by a deliberately slow KDF (that is what you need for
/// human-chosen passwords, which these are not).
public enum ChargerPassword {
    public static let minimumLength = 16
    public static let maximumLength = 40

    /// "<salt hex>:<HMAC-SHA256(salt, password) hex>"
    public static func hash(_ password: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return hex(salt) + ":" + hex(mac(password, salt: salt))
    }

    public static func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: ":")
        guard parts.count == 2, let salt = bytes(fromHex: parts[0]), let expected = bytes(fromHex: parts[1]) else { return false }
        let actual = mac(password, salt: salt)
        guard actual.count == expected.count else { return false }
        var difference: UInt8 = 0
        for (a, b) in zip(actual, expected) { difference |= a ^ b }
        return difference == 0
    }

    static func mac(_ password: String, salt: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(password.utf8), using: SymmetricKey(data: salt)))
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func bytes(fromHex text: Substring) -> [UInt8]? {
        guard text.count.isMultiple(of: 2) else { return nil }
        var result: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            result.append(byte)
            index = next
        }
        return result
    }
}
