public import Foundation
public import OCPPCore

/// A transition with the state as JSON: what the runner stores.
public struct StoredTransition: Sendable, Equatable {
    public var state: JSONValue
    public var commands: [WorkflowCommand]
    public var waitingFor: [MessageFilter]
    public var outcome: WorkflowOutcome?
    public var note: String

    public init(state: JSONValue, commands: [WorkflowCommand], waitingFor: [MessageFilter], outcome: WorkflowOutcome?, note: String) {
        self.state = state
        self.commands = commands
        self.waitingFor = waitingFor
        self.outcome = outcome
        self.note = note
    }
}

/// A workflow definition with its types erased to JSON, so the runner can hold them in one table.
public struct AnyWorkflow: Sendable {
    public let name: String
    public let version: Int
    /// The charge point an input concerns (for listing executions by charge point).
    public let chargePointID: @Sendable (JSONValue) -> String?
    private let startStep: @Sendable (JSONValue, Date) throws(WorkflowInputError) -> StoredTransition
    private let handleStep: @Sendable (WorkflowEvent, JSONValue, Date) throws -> StoredTransition

    public init<W: WorkflowDefinition>(_ workflow: W) {
        name = W.name
        version = W.version
        chargePointID = { $0["chargePointId"]?.stringValue }
        startStep = { (input: JSONValue, now: Date) throws(WorkflowInputError) -> StoredTransition in
            let typed: W.Input
            do {
                typed = try input.decode(W.Input.self, using: Self.decoder)
            } catch let error as DecodingError {
                throw Self.inputError(error)
            } catch {
                throw WorkflowInputError(field: "", problem: "\(error)")
            }
            return try Self.stored(try workflow.start(typed, now: now))
        }
        handleStep = { event, state, now in
            let typed = try state.decode(W.State.self, using: Self.decoder)
            return try Self.stored(workflow.handle(event, in: typed, now: now))
        }
    }

    public func start(input: JSONValue, now: Date) throws(WorkflowInputError) -> StoredTransition {
        try startStep(input, now)
    }

    /// Takes a step from a stored state (throws only if the stored state no longer decodes).
    public func handle(_ event: WorkflowEvent, state: JSONValue, now: Date) throws -> StoredTransition {
        try handleStep(event, state, now)
    }

    static func stored<S>(_ transition: WorkflowTransition<S>) throws(WorkflowInputError) -> StoredTransition {
        let state: JSONValue
        do {
            state = try JSONValue(encoding: transition.state, using: encoder)
        } catch {
            throw WorkflowInputError(field: "", problem: "the state could not be stored: \(error)")
        }
        return StoredTransition(
            state: state, commands: transition.commands, waitingFor: transition.waitingFor,
            outcome: transition.outcome, note: transition.note
        )
    }

    /// Inputs and states are coded straight from and to `JSONValue`, dates as ISO 8601 with whole
    /// seconds (what `JSONEncoder`'s `.iso8601` wrote before, so stored states still decode).
    /// `JSONEncoder`/`JSONDecoder` wrote text and parsed it back at every step: about half of the
    /// workflow worker's CPU in the sessions benchmark (perf).
    static let encoder = JSONValueEncoder(formatDate: { $0.formatted(.iso8601) })
    static let decoder = JSONValueDecoder(parseDate: { try? Date($0, strategy: .iso8601) })

    /// Names the field a decoding error is about, for a 400 that says which.
    static func inputError(_ error: DecodingError) -> WorkflowInputError {
        func path(_ context: DecodingError.Context, _ extra: (any CodingKey)? = nil) -> String {
            (context.codingPath + (extra.map { [$0] } ?? [])).map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return WorkflowInputError(field: path(context, key), problem: "is required")
        case .typeMismatch(let type, let context): return WorkflowInputError(field: path(context), problem: "must be \(type)")
        case .valueNotFound(let type, let context): return WorkflowInputError(field: path(context), problem: "must be \(type), not null")
        case .dataCorrupted(let context): return WorkflowInputError(field: path(context), problem: context.debugDescription)
        @unknown default: return WorkflowInputError(field: "", problem: "\(error)")
        }
    }
}
