public import Foundation
public import OCPP16
public import OCPPCore

/// What an operator says about a charge point (`PUT /api/v1/charge-points/{id}`).
public struct ChargePointRegistration: Sendable, Equatable {
    public enum PasswordChange: Sendable, Equatable {
        case keep
        /// The salted hash to store (never the password itself).
        case set(hash: String)
        case remove
    }

    public var description: String?
    public var registrationStatus: RegistrationStatus
    public var password: PasswordChange

    public init(description: String?, registrationStatus: RegistrationStatus, password: PasswordChange) {
        self.description = description
        self.registrationStatus = registrationStatus
        self.password = password
    }
}

/// What the charger gateway needs to know about an identity before its upgrade.
public struct ChargePointCredentials: Sendable, Equatable {
    public var registered: Bool
    public var passwordHash: String?
    /// The operator's registration decision (what the next BootNotification gets).
    public var registrationStatus: RegistrationStatus

    public init(registered: Bool, passwordHash: String?, registrationStatus: RegistrationStatus = .accepted) {
        self.registered = registered
        self.passwordHash = passwordHash
        self.registrationStatus = registrationStatus
    }
}

/// One configuration key an operator set for a charger, or for all.
public struct ConfigurationSetting: Sendable, Equatable, Codable {
    public var key: String
    public var value: String
    public var updatedAt: Date

    public init(key: String, value: String, updatedAt: Date) {
        self.key = key
        self.value = value
        self.updatedAt = updatedAt
    }
}

/// One entry of the authorization list.
public struct IdTagRecord: Sendable, Equatable, Codable {
    public var idTag: String
    public var status: AuthorizationStatus
    public var expiryDate: Date?
    public var parentIdTag: String?
    /// Limits every charging session of this tag gets (none when nil).
    public var sessionLimits: SessionLimits?

    public init(idTag: String, status: AuthorizationStatus, expiryDate: Date?, parentIdTag: String?, sessionLimits: SessionLimits? = nil) {
        self.idTag = idTag
        self.status = status
        self.expiryDate = expiryDate
        self.parentIdTag = parentIdTag
        self.sessionLimits = sessionLimits
    }
}

/// A command sent to a charger, as the audit trail and the asynchronous mode keep it.
public struct ChargerCallRecord: Sendable {
    public enum State: String, Sendable, Codable {
        case running = "RUNNING"
        case succeeded = "SUCCEEDED"
        case failed = "FAILED"
        case timedOut = "TIMED_OUT"
    }

    public var id: String
    public var chargePointID: String
    public var action: String
    public var payload: JSONValue
    /// "sync" or "async".
    public var mode: String
    public var requestedBy: String
    public var state: State
    public var response: JSONValue?
    public var error: JSONValue?
    public var nodeID: String?
    public var createdAt: Date
    public var finishedAt: Date?

    public init(
        id: String, chargePointID: String, action: String, payload: JSONValue, mode: String, requestedBy: String,
        state: State, response: JSONValue? = nil, error: JSONValue? = nil, nodeID: String?, createdAt: Date, finishedAt: Date? = nil
    ) {
        self.id = id
        self.chargePointID = chargePointID
        self.action = action
        self.payload = payload
        self.mode = mode
        self.requestedBy = requestedBy
        self.state = state
        self.response = response
        self.error = error
        self.nodeID = nodeID
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }
}

/// The port behind the operator's management endpoints.
public protocol ManagementStore: Sendable {
    /// Registers or updates a charge point; returns true when it was created.
    func putChargePoint(_ id: String, _ registration: ChargePointRegistration, at: Date) async throws -> Bool
    func credentials(of chargePointID: String) async throws -> ChargePointCredentials?
    func chargePointExists(_ id: String) async throws -> Bool

    /// Creates or replaces an id tag; returns true when it was created.
    func putIdTag(_ record: IdTagRecord, at: Date) async throws -> Bool
    func idTag(_ idTag: String) async throws -> IdTagRecord?
    /// Id tags in order, after `after` (keyset pagination).
    func idTags(after: String?, limit: Int) async throws -> [IdTagRecord]
    func deleteIdTag(_ idTag: String) async throws -> Bool

    /// Configuration pushed to chargers after an Accepted boot; `scope` is a charge point id, or
    /// `*` for every charger (a charger's own value for a key wins).
    func putConfiguration(scope: String, key: String, value: String, at: Date) async throws -> Bool
    func deleteConfiguration(scope: String, key: String) async throws -> Bool
    func configuration(scope: String) async throws -> [ConfigurationSetting]

    func recordCall(_ record: ChargerCallRecord) async throws
    func finishCall(id: String, state: ChargerCallRecord.State, response: JSONValue?, error: JSONValue?, at: Date) async throws
    func call(id: String) async throws -> ChargerCallRecord?
    func calls(chargePointID: String, limit: Int) async throws -> [ChargerCallRecord]
    /// Marks calls still RUNNING that started before `before` as FAILED (their process died).
    func failAbandonedCalls(startedBefore before: Date, at: Date) async throws -> Int
}
