public import Foundation

/// The operator API's bearer token: configured, or generated once and kept in the data directory.
public struct APIToken: Sendable {
    public enum Source: Sendable {
        case configured
        case generated(URL)
        case stored(URL)
    }

    public let value: String
    public let source: Source

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    public static func resolve(configured: String?, dataDirectory: URL) throws -> APIToken {
        if let configured {
            guard configured.utf8.count >= 16 else {
                throw Error(description: "The API token is too short (\(configured.utf8.count) characters): use at least 16 random characters, or leave it unset to have one generated.")
            }
            return APIToken(value: configured, source: .configured)
        }
        let file = dataDirectory.appendingPathComponent("api-token")
        if let stored = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !stored.isEmpty {
            return APIToken(value: stored, source: .stored(file))
        }
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let token = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        guard FileManager.default.createFile(atPath: file.path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw Error(description: "Could not write the generated API token to \(file.path); check that the data directory is writable, or pass --api-token.")
        }
        return APIToken(value: token, source: .generated(file))
    }
}
