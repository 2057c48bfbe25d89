import Foundation
import OCPP16

/// One connector (1...N) as the charger keeps it; index 0 is the charger itself.
struct ConnectorState {
    var status: ChargePointStatus = .available
    var operative = true
    /// A change of availability waiting for the running transaction to end.
    var scheduledAvailability: AvailabilityType?
    var session: ChargingSession?
    var reservation: Reservation?
    var meter: EnergyMeter
}

struct Reservation {
    var id: Int
    var idTag: String
    var expiry: Date
}

struct ChargingSession {
    var localTransactionID: Int
    var idTag: String
    var meterStartWh: Int
    var startedAt: Date
    var nextMeterAt: ContinuousClock.Instant
    var lastSampleAt: ContinuousClock.Instant
    /// Scenario sessions stop by themselves.
    var stopAt: ContinuousClock.Instant?
    var stateOfCharge: Double
    var beginSample: MeterValue?
}

/// A plausible AC meter: 3-phase, ~230 V, power tapering above 80 % state of charge.
struct EnergyMeter {
    var registerWh: Double
    var powerW: Double = 0
    var voltageV: Double = 230
    var batteryWh: Double = 60_000
    /// The jitter of power and voltage (no system call per number; see `SplitMix64`).
    private var random = SplitMix64()

    init(registerWh: Double) { self.registerWh = registerWh }

    var currentA: Double { powerW / (3 * max(voltageV, 1)) }

    /// Integrates `seconds` of charging at up to `maxPowerW` and updates SoC.
    mutating func advance(seconds: Double, maxPowerW: Double, soc: inout Double) {
        let taper = soc < 80 ? 1.0 : max(0.1, (100 - soc) / 20)
        powerW = soc >= 100 ? 0 : maxPowerW * Double.random(in: 0.93...1.0, using: &random) * taper
        voltageV = 230 + Double.random(in: -3...3, using: &random)
        let wh = powerW * max(seconds, 0) / 3600
        registerWh += wh
        soc = min(100, soc + wh / batteryWh * 100)
    }

    func sample(at date: Date, soc: Double, context: ReadingContext) -> MeterValue {
        MeterValue(timestamp: date, sampledValue: [
            SampledValue(value: String(Int(registerWh.rounded(.down))), context: context, format: .raw,
                         measurand: .energyActiveImportRegister, location: .outlet, unit: .wh),
            SampledValue(value: Self.format(powerW, 1), context: context, format: .raw,
                         measurand: .powerActiveImport, location: .outlet, unit: .w),
            SampledValue(value: Self.format(currentA, 2), context: context, format: .raw,
                         measurand: .currentImport, location: .outlet, unit: .a),
            SampledValue(value: Self.format(voltageV, 1), context: context, format: .raw,
                         measurand: .voltage, location: .outlet, unit: .v),
            SampledValue(value: Self.format(soc, 1), context: context, format: .raw,
                         measurand: .soC, location: .ev, unit: .percent),
        ])
    }

    /// `v` with `digits` (0-3) decimals, like `String(format: "%.2f")` but without its cost
    /// (the simulator formats four of these per MeterValues; `String(format:)` was a visible part
    /// of the load generator's CPU per message).
    static func format(_ v: Double, _ digits: Int) -> String {
        precondition((0...3).contains(digits) && v.isFinite)
        let scale = [1, 10, 100, 1000][digits]
        let scaled = Int((abs(v) * Double(scale)).rounded())
        var text = scaled != 0 && v < 0 ? "-" : ""
        text += String(scaled / scale)
        if digits > 0 {
            let fraction = String(scaled % scale)
            text += "." + String(repeating: "0", count: digits - fraction.count) + fraction
        }
        return text
    }
}

extension MeterValue {
    /// The same sample in StopTransaction's `transactionData` types.
    var stopTransactionValue: StopTransactionMeterValue {
        StopTransactionMeterValue(timestamp: timestamp, sampledValue: sampledValue.map {
            StopTransactionSampledValue(
                value: $0.value, context: $0.context, format: $0.format, measurand: $0.measurand,
                phase: $0.phase, location: $0.location,
                unit: $0.unit.flatMap { StopTransactionUnitOfMeasure(rawValue: $0.rawValue) }
            )
        })
    }
}

/// A transaction-related message kept in order and delivered even across reconnects.
enum TransactionMessage {
    case start(localID: Int, StartTransactionRequest)
    /// `transactionId` in the request is replaced by the server id at delivery.
    case meterValues(localID: Int, MeterValuesRequest)
    case stop(localID: Int, StopTransactionRequest)

    var localID: Int {
        switch self {
        case .start(let id, _), .meterValues(let id, _), .stop(let id, _): id
        }
    }

    var isMeterValues: Bool { if case .meterValues = self { true } else { false } }
}

/// The charger's configuration keys (`GetConfiguration` / `ChangeConfiguration`).
struct ConfigurationStore {
    struct Entry {
        var value: String
        var readonly: Bool
        var kind: Kind
    }

    enum Kind { case integer, boolean, text }

    private(set) var entries: [String: Entry] = [:]
    private(set) var order: [String] = []

    init(heartbeat: Int, meterInterval: Int, connectors: Int) {
        let profiles = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
        let measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
        let defaults: [(String, String, Bool, Kind)] = [
            ("HeartbeatInterval", String(heartbeat), false, .integer),
            ("MeterValueSampleInterval", String(meterInterval), false, .integer),
            ("MeterValuesSampledData", measurands, false, .text),
            ("MeterValuesAlignedData", "Energy.Active.Import.Register", false, .text),
            ("ClockAlignedDataInterval", "0", false, .integer),
            ("StopTxnSampledData", "Energy.Active.Import.Register", false, .text),
            ("StopTxnAlignedData", "", false, .text),
            ("ConnectionTimeOut", "60", false, .integer),
            ("NumberOfConnectors", String(connectors), true, .integer),
            ("AuthorizeRemoteTxRequests", "false", false, .boolean),
            ("LocalAuthorizeOffline", "true", false, .boolean),
            ("LocalPreAuthorize", "false", false, .boolean),
            ("StopTransactionOnInvalidId", "true", false, .boolean),
            ("StopTransactionOnEVSideDisconnect", "true", false, .boolean),
            ("UnlockConnectorOnEVSideDisconnect", "true", false, .boolean),
            ("TransactionMessageAttempts", "3", false, .integer),
            ("TransactionMessageRetryInterval", "60", false, .integer),
            ("ResetRetries", "1", false, .integer),
            ("WebSocketPingInterval", "0", false, .integer),
            ("SupportedFeatureProfiles", profiles, true, .text),
            ("LocalAuthListEnabled", "true", false, .boolean),
            ("LocalAuthListMaxLength", "100", true, .integer),
            ("SendLocalListMaxLength", "100", true, .integer),
            ("ChargeProfileMaxStackLevel", "10", true, .integer),
            ("ChargingScheduleAllowedChargingRateUnit", "Current,Power", true, .text),
            ("ChargingScheduleMaxPeriods", "24", true, .integer),
            ("MaxChargingProfilesInstalled", "10", true, .integer),
            ("GetConfigurationMaxKeys", "50", true, .integer),
        ]
        for (k, v, ro, kind) in defaults {
            entries[k] = Entry(value: v, readonly: ro, kind: kind)
            order.append(k)
        }
    }

    subscript(key: String) -> String? { entries[key]?.value }

    func bool(_ key: String) -> Bool { entries[key]?.value.lowercased() == "true" }
    func int(_ key: String) -> Int? { entries[key].flatMap { Int($0.value) } }

    /// Applies a ChangeConfiguration (keys are case-sensitive, as in 1.6).
    mutating func change(_ key: String, to value: String) -> ConfigurationStatus {
        guard var entry = entries[key] else { return .notSupported }
        if entry.readonly { return .rejected }
        switch entry.kind {
        case .integer: guard let n = Int(value), n >= 0 else { return .rejected }
        case .boolean: guard ["true", "false"].contains(value.lowercased()) else { return .rejected }
        case .text: break
        }
        entry.value = value
        entries[key] = entry
        return .accepted
    }

    mutating func set(_ key: String, _ value: String) {
        if entries[key] != nil { entries[key]?.value = value }
    }

    func get(_ keys: [String]?) -> GetConfigurationResponse {
        guard let keys, !keys.isEmpty else {
            return GetConfigurationResponse(
                configurationKey: order.map { ConfigurationKey(key: $0, readonly: entries[$0]!.readonly, value: entries[$0]!.value) },
                unknownKey: nil
            )
        }
        var known: [ConfigurationKey] = []
        var unknown: [String] = []
        for k in keys {
            if let e = entries[k] { known.append(ConfigurationKey(key: k, readonly: e.readonly, value: e.value)) } else { unknown.append(k) }
        }
        return GetConfigurationResponse(configurationKey: known.isEmpty ? nil : known, unknownKey: unknown.isEmpty ? nil : unknown)
    }

    var dictionary: [String: String] { entries.mapValues(\.value) }
}
