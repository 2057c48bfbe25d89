import Foundation
import Logging
import OCPP16
import OCPPCore

extension ChargePointEngine {
    // MARK: - Boot and heartbeat

    func boot() async {
        let request = BootNotificationRequest(
            chargePointVendor: config.vendor, chargePointModel: config.model,
            chargePointSerialNumber: config.serialNumber, firmwareVersion: config.firmwareVersion
        )
        do {
            let response = try await call(request)
            registration = response.status
            let interval: Duration = response.interval > 0 ? .seconds(response.interval) : config.defaultBootRetryInterval
            switch response.status {
            case .accepted:
                bootDueAt = nil
                if response.interval > 0 {
                    heartbeatInterval = .seconds(response.interval)
                    store.set("HeartbeatInterval", String(response.interval))
                }
                nextHeartbeatAt = clock.now + heartbeatInterval
                stats?.bootAccepted()
                work.insert(.statusAll, at: 0)
                publish { $0.bootAcceptedCount += 1 }
            case .pending, .rejected:
                bootDueAt = clock.now + interval
                publish()
            }
        } catch {
            // Connection loss: boot again after reconnecting. Otherwise retry later.
            if connection != nil { bootDueAt = clock.now + config.defaultBootRetryInterval }
            logger.warning("BootNotification failed", metadata: ["error": .string("\(error)")])
            publish { $0.lastError = "BootNotification failed: \(error)" }
        }
    }

    func heartbeat() async {
        nextHeartbeatAt = clock.now + heartbeatInterval
        _ = try? await call(HeartbeatRequest())
    }

    // MARK: - Transaction messages (ordered, survive reconnects)

    func enqueue(_ message: TransactionMessage) {
        if txQueue.count >= config.maxQueuedTransactionMessages {
            if let i = txQueue.firstIndex(where: \.isMeterValues) {
                txQueue.remove(at: i)
                logger.warning("offline queue full: dropped the oldest MeterValues")
            } else if message.isMeterValues {
                logger.warning("offline queue full: dropped a MeterValues")
                return
            }
        }
        txQueue.append(message)
    }

    func deliverNextTransactionMessage() async {
        let message = txQueue[0]
        if droppedLocalTransactions.contains(message.localID), !isStart(message) {
            txQueue.removeFirst()
            publish()
            return
        }
        do {
            switch message {
            case .start(let localID, let request):
                let response = try await call(request)
                serverTransactionIDs[localID] = response.transactionId
                if response.idTagInfo.status != .accepted {
                    logger.notice("StartTransaction answered \(response.idTagInfo.status.rawValue)")
                }
            case .meterValues(let localID, var request):
                guard let id = serverTransactionIDs[localID] else { break }
                request.transactionId = id
                // The answer is an empty object: nothing to decode.
                try await callMeterValues(request)
            case .stop(let localID, var request):
                guard let id = serverTransactionIDs[localID] else { break }
                request.transactionId = id
                _ = try await call(request)
                serverTransactionIDs[localID] = nil
                publish { $0.completedTransactions += 1 }
            }
            txQueue.removeFirst()
        } catch let error as CallError {
            // The central system refused it: retrying the same message would not help.
            logger.error("transaction message refused", metadata: ["error": .string(error.description)])
            if isStart(message) { droppedLocalTransactions.insert(message.localID) }
            txQueue.removeFirst()
        } catch let error as SimulatorError where error.code == .schemaViolation || error.code == .decodingFailed {
            logger.error("transaction message dropped", metadata: ["error": .string(error.message)])
            if isStart(message) { droppedLocalTransactions.insert(message.localID) }
            txQueue.removeFirst()
        } catch {
            // Timeout or connection loss: keep it at the head and retry (after reconnect).
        }
        // A delivered MeterValues changes only the queue's depth; the rest is rebuilt when a
        // start or a stop changed transaction ids (the snapshot is rebuilt often: it was a
        // twentieth of the simulator's time in sessions-max).
        if message.isMeterValues { publishQueueDepth() } else { publish() }
    }

    private func isStart(_ m: TransactionMessage) -> Bool {
        if case .start = m { true } else { false }
    }

    // MARK: - Work

    func perform(_ item: WorkItem) async {
        switch item {
        case .statusAll:
            for c in connectors.indices { await sendStatus(connector: c, connectors[c].status) }
        case .status(let c, let status):
            await sendStatus(connector: c, status)
        case .boot:
            await boot()
        case .heartbeat:
            await heartbeat()
        case .meterValues(let connector):
            let targets = connector.map { [$0] } ?? Array(connectors.indices.dropFirst())
            for c in targets where connectors.indices.contains(c) {
                let sample = connectors[c].meter.sample(at: Date(), soc: connectors[c].session?.stateOfCharge ?? 0, context: .trigger)
                var txID: Int?
                if let s = connectors[c].session { txID = serverTransactionIDs[s.localTransactionID] }
                _ = try? await call(MeterValuesRequest(connectorId: c, transactionId: txID, meterValue: [sample]))
            }
        case .diagnosticsStatus:
            _ = try? await call(DiagnosticsStatusNotificationRequest(status: .idle))
        case .firmwareStatus:
            _ = try? await call(FirmwareStatusNotificationRequest(status: .idle))
        case .startSession(let c, let idTag, let authorize, let stopAfter):
            await startSession(connector: c, idTag: idTag, authorize: authorize, stopAfter: stopAfter)
        case .stopSession(let c, let reason):
            await stopSession(connector: c, reason: reason)
        case .reset(let type):
            await reset(type)
        }
    }

    /// Records the status and reports it when the central system can hear it (otherwise all
    /// statuses are reported after the next Accepted / reconnect).
    func setStatus(_ c: Int, _ status: ChargePointStatus) async {
        connectors[c].status = status
        publish()
        if connection != nil && registration == .accepted { await sendStatus(connector: c, status) }
    }

    func sendStatus(connector c: Int, _ status: ChargePointStatus) async {
        guard connection != nil else { return }
        _ = try? await call(StatusNotificationRequest(connectorId: c, errorCode: .noError, status: status, timestamp: Date()))
    }

    func startSession(connector c: Int, idTag: String, authorize: Bool, stopAfter: Duration?) async {
        guard connectors.indices.contains(c), c > 0, connectors[c].session == nil, connectors[c].operative else {
            logger.notice("cannot start a session", metadata: ["ocpp.connector": "\(c)"])
            return
        }
        if authorize, connection != nil, registration == .accepted {
            do {
                let response = try await call(AuthorizeRequest(idTag: idTag))
                guard response.idTagInfo.status == .accepted else {
                    logger.notice("idTag not accepted", metadata: ["ocpp.id_tag_status": .string(response.idTagInfo.status.rawValue)])
                    return
                }
            } catch {
                logger.notice("Authorize failed; starting on local authorization", metadata: ["error": .string("\(error)")])
            }
        }
        guard connectors[c].session == nil else { return }
        let reservationID = connectors[c].reservation.flatMap { $0.idTag == idTag ? $0.id : nil }
        connectors[c].reservation = nil
        await setStatus(c, .preparing)
        let now = clock.now
        let localID = nextLocalTransactionID
        nextLocalTransactionID += 1
        let meterStart = Int(connectors[c].meter.registerWh.rounded(.down))
        var session = ChargingSession(
            localTransactionID: localID, idTag: idTag, meterStartWh: meterStart, startedAt: Date(),
            nextMeterAt: now + meterInterval, lastSampleAt: now,
            stopAt: stopAfter.map { now + $0 }, stateOfCharge: Double.random(in: 15...40)
        )
        session.beginSample = connectors[c].meter.sample(at: session.startedAt, soc: session.stateOfCharge, context: .transactionBegin)
        connectors[c].session = session
        enqueue(.start(localID: localID, StartTransactionRequest(
            connectorId: c, idTag: idTag, meterStart: meterStart, reservationId: reservationID, timestamp: session.startedAt
        )))
        // Charging is reported after the StartTransaction (the queue goes first).
        connectors[c].status = .charging
        work.append(.status(connector: c, .charging))
        publish()
    }

    func stopSession(connector c: Int, reason: Reason) async {
        guard connectors.indices.contains(c), var session = connectors[c].session else { return }
        sample(connector: c, session: &session)
        connectors[c].session = nil
        await setStatus(c, .finishing)
        let end = connectors[c].meter.sample(at: Date(), soc: session.stateOfCharge, context: .transactionEnd)
        let data = [session.beginSample, end].compactMap { $0?.stopTransactionValue }
        enqueue(.stop(localID: session.localTransactionID, StopTransactionRequest(
            idTag: session.idTag, meterStop: Int(connectors[c].meter.registerWh.rounded(.down)), timestamp: Date(),
            transactionId: 0, reason: reason, transactionData: data
        )))
        connectors[c].meter.powerW = 0
        var next: ChargePointStatus = .available
        if let scheduled = connectors[c].scheduledAvailability {
            connectors[c].operative = scheduled == .operative
            connectors[c].scheduledAvailability = nil
            next = scheduled == .operative ? .available : .unavailable
        }
        connectors[c].status = next
        work.append(.status(connector: c, next))
        publish()
    }

    private func sample(connector c: Int, session: inout ChargingSession) {
        let now = clock.now
        let seconds = session.lastSampleAt.duration(to: now).seconds
        connectors[c].meter.advance(seconds: seconds, maxPowerW: config.maxPowerW, soc: &session.stateOfCharge)
        session.lastSampleAt = now
    }

    /// Meter samples and scenario stops that are due; works offline too (messages are queued).
    func processSessionTimers(now: ContinuousClock.Instant) -> Bool {
        var did = false
        for c in connectors.indices {
            guard var session = connectors[c].session else { continue }
            if let stopAt = session.stopAt, now >= stopAt {
                session.stopAt = nil
                connectors[c].session = session
                work.append(.stopSession(connector: c, reason: .local))
                did = true
                continue
            }
            if now >= session.nextMeterAt {
                sample(connector: c, session: &session)
                let value = connectors[c].meter.sample(at: Date(), soc: session.stateOfCharge, context: .samplePeriodic)
                enqueue(.meterValues(localID: session.localTransactionID, MeterValuesRequest(
                    connectorId: c, transactionId: 0, meterValue: [value]
                )))
                session.nextMeterAt = max(session.nextMeterAt + meterInterval, now + meterInterval / 2)
                connectors[c].session = session
                publishQueueDepth()
                did = true
            }
        }
        return did
    }

    func sessionDeadline() -> ContinuousClock.Instant? {
        var result: ContinuousClock.Instant?
        for c in connectors {
            guard let s = c.session else { continue }
            result = earliest(result, earliest(s.nextMeterAt, s.stopAt))
        }
        return result
    }

    func reset(_ type: ResetType) async {
        let reason: Reason = type == .hard ? .hardReset : .softReset
        for c in connectors.indices where connectors[c].session != nil {
            await stopSession(connector: c, reason: reason)
        }
        work.removeAll()
        while connection != nil, registration == .accepted, !txQueue.isEmpty {
            await deliverNextTransactionMessage()
        }
        for c in connectors.indices {
            connectors[c].status = connectors[c].operative ? .available : .unavailable
            connectors[c].reservation = nil
        }
        registration = nil
        bootDueAt = nil
        if let connection {
            generation &+= 1
            await connection.close()
            self.connection = nil
            stats?.disconnected()
        }
        // Reboot: reconnect at once and boot again.
        wantConnected = true
        nextConnectAt = clock.now
        backoff = config.reconnectInitialBackoff
        nextHeartbeatAt = nil
        publish { $0.isConnected = false }
    }

    // MARK: - Scenarios

    func scenarioDeadline(canSend: Bool) -> ContinuousClock.Instant? {
        guard canSend else { return nil }
        switch scenario {
        case .idle: return nil
        case .heartbeat, .flood: return scenarioSlot
        case .sessions: return scenarioNextAt
        }
    }

    /// One step of the fleet scenario; false when there is nothing to do now.
    func scenarioStep(now: ContinuousClock.Instant) async -> Bool {
        switch scenario {
        case .idle:
            return false
        case .heartbeat, .flood:
            if let limiter = rateLimiter {
                if scenarioSlot == nil { scenarioSlot = limiter.reserve() }
                if let slot = scenarioSlot, slot > now { return false }
                scenarioSlot = nil
            }
            if case .heartbeat = scenario {
                _ = try? await call(HeartbeatRequest())
            } else {
                await floodMessage()
            }
            return true
        case .sessions(let duration, let pause):
            let busy = connectors.dropFirst().contains { $0.session != nil }
            guard !busy else { return false }
            var length = duration
            if scenarioNextAt == nil {
                let first = SessionCycle(duration: duration, pause: pause).firstSession(atPhase: Double.random(in: 0..<1))
                length = first.length
                if first.startsIn > .zero { scenarioNextAt = now + first.startsIn }
            }
            if let next = scenarioNextAt, now < next { return false }
            scenarioNextAt = now + length + pause
            let tag = String(("TAG-" + config.identity).prefix(20))
            work.append(.startSession(connector: 1, idTag: tag, authorize: true, stopAfter: length))
            return true
        }
    }

    private func floodMessage() async {
        floodStep &+= 1
        let c = 1 + floodStep % max(1, connectors.count - 1)
        switch floodStep % 4 {
        case 0:
            _ = try? await call(HeartbeatRequest())
        case 1:
            _ = try? await call(StatusNotificationRequest(connectorId: c, errorCode: .noError, status: connectors[c].status, timestamp: Date()))
        case 2:
            _ = try? await call(AuthorizeRequest(idTag: String(("TAG-" + config.identity).prefix(20))))
        default:
            let value = connectors[c].meter.sample(at: Date(), soc: 50, context: .samplePeriodic)
            _ = try? await call(MeterValuesRequest(connectorId: c, meterValue: [value]))
        }
    }
}
