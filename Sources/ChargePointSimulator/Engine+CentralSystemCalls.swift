import Foundation
import Logging
import OCPP16
import OCPPCore
import Synchronization

/// A CALLERROR to answer instead of a CALLRESULT.
struct AnswerError: Error {
    var code: OCPPErrorCode
    var description: String
}

extension ChargePointEngine {
    /// Answers one central-system CALL at once (never waits for our own outstanding CALL); any
    /// follow-up the charger does (a session, a reboot, a triggered message) is queued as work.
    func answerCentralSystemCall(id: String, action: String, payload: JSONValue) async {
        stats?.centralSystemCall(action: action)
        var answer = hook.value.withLock { $0 }?(action, payload) ?? .standard
        if case .standard = answer {
            switch config.centralSystemCallsByAction[action] ?? config.centralSystemCalls {
            case .answer: break
            case .reject: answer = .reject
            case .ignore: answer = .ignore
            }
        }
        let frame: OCPPFrame
        switch answer {
        case .ignore:
            logger.debug("ignoring central-system call", metadata: ["ocpp.action": .string(action)])
            return
        case .result(let p):
            frame = .callResult(id: id, payload: p)
        case .callError(let code, let description):
            frame = .callError(id: id, code: code, description: description, version: .ocpp16)
        case .reject:
            if let p = Self.rejection(for: action) {
                frame = .callResult(id: id, payload: p)
            } else {
                frame = .callError(id: id, code: .genericError, description: "Rejected by the simulator", version: .ocpp16)
            }
        case .standard:
            do {
                let result = try standardAnswer(action: action, payload: payload)
                if config.validateMessages, let v = OCPP16Validation.response(action, result), !v.isEmpty {
                    logger.error("simulator answer violates the schema", metadata: ["ocpp.action": .string(action), "error": .string(v.summary())])
                }
                frame = .callResult(id: id, payload: result)
            } catch let e as AnswerError {
                frame = .callError(id: id, code: e.code, description: e.description, version: .ocpp16)
            } catch {
                frame = .callError(id: id, code: .internalError, description: "simulator error", version: .ocpp16)
            }
        }
        await send(frame)
    }

    /// The negative answer for actions that have one.
    static func rejection(for action: String) -> JSONValue? {
        switch action {
        case "UnlockConnector": ["status": "UnlockFailed"]
        case "SendLocalList": ["status": "Failed"]
        case "ClearChargingProfile": ["status": "Unknown"]
        case "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "ChangeConfiguration", "ChangeAvailability",
             "ClearCache", "DataTransfer", "TriggerMessage", "SetChargingProfile", "GetCompositeSchedule", "ReserveNow",
             "CancelReservation", "ExtendedTriggerMessage", "CertificateSigned", "DeleteCertificate",
             "InstallCertificate", "GetLog", "SignedUpdateFirmware":
            ["status": "Rejected"]
        default: nil
        }
    }

    private func decodeRequest<T: Decodable>(_ type: T.Type, _ action: String, _ payload: JSONValue) throws -> T {
        if let violations = OCPP16Validation.request(action, payload), !violations.isEmpty {
            throw AnswerError(code: violations.errorCode(for: .ocpp16) ?? .formationViolation, description: violations.summary())
        }
        do { return try payload.decode(T.self, using: OCPP16Coding.valueDecoder) } catch {
            throw AnswerError(code: .formationViolation, description: "cannot decode \(action): \(error)")
        }
    }

    private func encode(_ value: some Encodable) throws -> JSONValue {
        try JSONValue(encoding: value, using: OCPP16Coding.valueEncoder)
    }

    private var connectorRange: ClosedRange<Int> { 0...(connectors.count - 1) }

    private func standardAnswer(action: String, payload: JSONValue) throws -> JSONValue {
        guard let known = OCPP16Action(rawValue: action) else {
            throw AnswerError(code: .notImplemented, description: "Unknown action \(action)")
        }
        switch known {
        case .remoteStartTransaction:
            let r = try decodeRequest(RemoteStartTransactionRequest.self, action, payload)
            var target: Int?
            if let c = r.connectorId {
                if c >= 1, c < connectors.count, isFree(c, for: r.idTag) { target = c }
            } else {
                target = connectors.indices.dropFirst().first { isFree($0, for: r.idTag) }
            }
            guard let c = target else { return try encode(RemoteStartTransactionResponse(status: .rejected)) }
            if let profile = r.chargingProfile { chargingProfiles[profile.chargingProfileId] = (c, profile) }
            work.append(.startSession(connector: c, idTag: r.idTag, authorize: store.bool("AuthorizeRemoteTxRequests"), stopAfter: nil))
            return try encode(RemoteStartTransactionResponse(status: .accepted))

        case .remoteStopTransaction:
            let r = try decodeRequest(RemoteStopTransactionRequest.self, action, payload)
            let c = connectors.indices.first { i in
                connectors[i].session.map { serverTransactionIDs[$0.localTransactionID] == r.transactionId } ?? false
            }
            guard let c else { return try encode(RemoteStopTransactionResponse(status: .rejected)) }
            work.append(.stopSession(connector: c, reason: .remote))
            return try encode(RemoteStopTransactionResponse(status: .accepted))

        case .reset:
            let r = try decodeRequest(ResetRequest.self, action, payload)
            work.append(.reset(r.type))
            return try encode(ResetResponse(status: .accepted))

        case .changeConfiguration:
            let r = try decodeRequest(ChangeConfigurationRequest.self, action, payload)
            let status = store.change(r.key, to: r.value)
            if status == .accepted {
                if r.key == "HeartbeatInterval", let s = store.int(r.key), s > 0 {
                    heartbeatInterval = .seconds(s)
                    if nextHeartbeatAt != nil { nextHeartbeatAt = clock.now + heartbeatInterval }
                }
                if r.key == "MeterValueSampleInterval", let s = store.int(r.key), s > 0 {
                    meterInterval = .seconds(s)
                }
                publish()
            }
            return try encode(ChangeConfigurationResponse(status: status))

        case .getConfiguration:
            let r = try decodeRequest(GetConfigurationRequest.self, action, payload)
            return try encode(store.get(r.key))

        case .triggerMessage:
            let r = try decodeRequest(TriggerMessageRequest.self, action, payload)
            if let c = r.connectorId, !connectorRange.contains(c) {
                return try encode(TriggerMessageResponse(status: .rejected))
            }
            switch r.requestedMessage {
            case .bootNotification: work.append(.boot)
            case .heartbeat: work.append(.heartbeat)
            case .statusNotification:
                if let c = r.connectorId { work.append(.status(connector: c, connectors[c].status)) } else { work.append(.statusAll) }
            case .meterValues: work.append(.meterValues(connector: r.connectorId == 0 ? nil : r.connectorId))
            case .diagnosticsStatusNotification: work.append(.diagnosticsStatus)
            case .firmwareStatusNotification: work.append(.firmwareStatus)
            }
            return try encode(TriggerMessageResponse(status: .accepted))

        case .unlockConnector:
            let r = try decodeRequest(UnlockConnectorRequest.self, action, payload)
            guard r.connectorId >= 1, r.connectorId < connectors.count else {
                return try encode(UnlockConnectorResponse(status: .notSupported))
            }
            if connectors[r.connectorId].session != nil {
                work.append(.stopSession(connector: r.connectorId, reason: .unlockCommand))
            }
            return try encode(UnlockConnectorResponse(status: .unlocked))

        case .changeAvailability:
            let r = try decodeRequest(ChangeAvailabilityRequest.self, action, payload)
            guard connectorRange.contains(r.connectorId) else {
                return try encode(ChangeAvailabilityResponse(status: .rejected))
            }
            let targets = r.connectorId == 0 ? Array(connectors.indices) : [r.connectorId]
            var scheduled = false
            for c in targets {
                if connectors[c].session != nil {
                    connectors[c].scheduledAvailability = r.type
                    scheduled = true
                } else {
                    connectors[c].operative = r.type == .operative
                    let status: ChargePointStatus = r.type == .operative ? .available : .unavailable
                    if connectors[c].status != status {
                        connectors[c].status = status
                        work.append(.status(connector: c, status))
                    }
                }
            }
            publish()
            return try encode(ChangeAvailabilityResponse(status: scheduled ? .scheduled : .accepted))

        case .clearCache:
            _ = try decodeRequest(ClearCacheRequest.self, action, payload)
            return try encode(ClearCacheResponse(status: .accepted))

        case .dataTransfer:
            _ = try decodeRequest(DataTransferRequest.self, action, payload)
            return try encode(DataTransferResponse(status: .unknownVendorId))

        case .getLocalListVersion:
            _ = try decodeRequest(GetLocalListVersionRequest.self, action, payload)
            return try encode(GetLocalListVersionResponse(listVersion: localListVersion))

        case .sendLocalList:
            let r = try decodeRequest(SendLocalListRequest.self, action, payload)
            localListVersion = r.listVersion
            return try encode(SendLocalListResponse(status: .accepted))

        case .setChargingProfile:
            let r = try decodeRequest(SetChargingProfileRequest.self, action, payload)
            guard connectorRange.contains(r.connectorId) else {
                return try encode(SetChargingProfileResponse(status: .rejected))
            }
            chargingProfiles[r.csChargingProfiles.chargingProfileId] = (r.connectorId, r.csChargingProfiles)
            return try encode(SetChargingProfileResponse(status: .accepted))

        case .clearChargingProfile:
            let r = try decodeRequest(ClearChargingProfileRequest.self, action, payload)
            let before = chargingProfiles.count
            chargingProfiles = chargingProfiles.filter { id, entry in
                let matches = (r.id == nil || r.id == id)
                    && (r.connectorId == nil || r.connectorId == entry.connector)
                    && (r.chargingProfilePurpose == nil || r.chargingProfilePurpose == entry.profile.chargingProfilePurpose)
                    && (r.stackLevel == nil || r.stackLevel == entry.profile.stackLevel)
                return !matches
            }
            return try encode(ClearChargingProfileResponse(status: chargingProfiles.count < before ? .accepted : .unknown))

        case .getCompositeSchedule:
            let r = try decodeRequest(GetCompositeScheduleRequest.self, action, payload)
            guard connectorRange.contains(r.connectorId) else {
                return try encode(GetCompositeScheduleResponse(status: .rejected))
            }
            let unit = r.chargingRateUnit ?? .a
            let profile = chargingProfiles.values
                .filter { $0.connector == r.connectorId || $0.connector == 0 }
                .max { $0.profile.stackLevel < $1.profile.stackLevel }?.profile
            var schedule: ChargingSchedule
            if let profile, profile.chargingSchedule.chargingRateUnit == unit {
                schedule = profile.chargingSchedule
                schedule.duration = r.duration
                schedule.startSchedule = nil
            } else {
                let limit = unit == .a ? 32.0 : config.maxPowerW
                schedule = ChargingSchedule(
                    duration: r.duration, chargingRateUnit: unit,
                    chargingSchedulePeriod: [ChargingSchedulePeriod(startPeriod: 0, limit: limit)]
                )
            }
            return try encode(GetCompositeScheduleResponse(
                status: .accepted, connectorId: r.connectorId, scheduleStart: Date(), chargingSchedule: schedule
            ))

        case .reserveNow:
            let r = try decodeRequest(ReserveNowRequest.self, action, payload)
            guard connectorRange.contains(r.connectorId) else { return try encode(ReserveNowResponse(status: .rejected)) }
            if r.connectorId == 0 { return try encode(ReserveNowResponse(status: .accepted)) }
            let c = r.connectorId
            if !connectors[c].operative { return try encode(ReserveNowResponse(status: .unavailable)) }
            if connectors[c].status == .faulted { return try encode(ReserveNowResponse(status: .faulted)) }
            if connectors[c].session != nil || (connectors[c].reservation != nil && connectors[c].reservation?.id != r.reservationId) {
                return try encode(ReserveNowResponse(status: .occupied))
            }
            connectors[c].reservation = Reservation(id: r.reservationId, idTag: r.idTag, expiry: r.expiryDate)
            connectors[c].status = .reserved
            work.append(.status(connector: c, .reserved))
            publish()
            return try encode(ReserveNowResponse(status: .accepted))

        case .cancelReservation:
            let r = try decodeRequest(CancelReservationRequest.self, action, payload)
            guard let c = connectors.indices.first(where: { connectors[$0].reservation?.id == r.reservationId }) else {
                return try encode(CancelReservationResponse(status: .rejected))
            }
            connectors[c].reservation = nil
            if connectors[c].status == .reserved {
                connectors[c].status = .available
                work.append(.status(connector: c, .available))
            }
            publish()
            return try encode(CancelReservationResponse(status: .accepted))

        default:
            throw AnswerError(code: .notSupported, description: "\(action) is not supported by this charger")
        }
    }

    private func isFree(_ c: Int, for idTag: String) -> Bool {
        let conn = connectors[c]
        guard conn.session == nil, conn.operative else { return false }
        if let reservation = conn.reservation { return reservation.idTag == idTag }
        return conn.status == .available || conn.status == .preparing
    }
}
