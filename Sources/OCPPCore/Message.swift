public protocol OCPPPayload: Codable, Sendable, Equatable {}
public protocol OCPPRequest: OCPPPayload { associatedtype Response: OCPPPayload; static var action: String { get } }
