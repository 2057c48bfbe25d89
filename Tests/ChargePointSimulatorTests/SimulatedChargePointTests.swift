import ChargePointSimulator
import Foundation
import OCPP16
import OCPPCore
import Testing

private func configuration(_ server: TestCentralSystem, _ identity: String) -> ChargePointConfiguration {
    var c = ChargePointConfiguration(url: server.baseURL, identity: identity)
    c.validateMessages = true
    c.callTimeout = .seconds(10)
    c.reconnectInitialBackoff = .milliseconds(50)
    c.reconnectMaxBackoff = .milliseconds(200)
    return c
}

/// Booted, and the StatusNotifications of connectors 0...2 that follow Accepted have arrived.
private func waitUntilReady(_ cp: SimulatedChargePoint, _ server: TestCentralSystem) async throws {
    try await cp.waitUntilBooted()
    let id = cp.configuration.identity
    try await server.waitFor(id, "initial statuses") { r in
        Set(r.filter { $0.action == "StatusNotification" }.compactMap(\.connectorId)) == [0, 1, 2]
    }
}

@Suite("SimulatedChargePoint against a live central system", .timeLimit(.minutes(1)))
struct SimulatedChargePointTests {
    @Test func bootStatusAndHeartbeatRoundTrip() async throws {
        try await TestCentralSystem.with { server in
            server.setHeartbeatInterval(1)
            var config = configuration(server, "CP-BOOT")
            config.basicAuthPassword = "s3cret"
            let cp = SimulatedChargePoint(configuration: config)
            try await cp.withRunning { cp in
                try await cp.waitUntilBooted()
                #expect(cp.snapshot.subprotocol == "ocpp1.6")
                let response = try await cp.call(HeartbeatRequest())
                #expect(abs(response.currentTime.timeIntervalSinceNow) < 60)
                // Status of connectors 0...2 after Accepted; then an automatic heartbeat (interval 1 s).
                try await server.waitFor("CP-BOOT", "statuses") { r in
                    Set(r.filter { $0.action == "StatusNotification" }.compactMap(\.connectorId)) == [0, 1, 2]
                }
                try await server.waitFor("CP-BOOT", "two heartbeats") { r in r.filter { $0.action == "Heartbeat" }.count >= 2 }
            }
            let received = server.received("CP-BOOT")
            #expect(received.first?.action == "BootNotification")
            #expect(received.first?.payload["chargePointVendor"] == "Chargepath")
            let expected = "Basic " + Data("CP-BOOT:s3cret".utf8).base64EncodedString()
            #expect(server.authorization("CP-BOOT") == expected)
        }
    }

    @Test func pendingThenAccepted() async throws {
        try await TestCentralSystem.with { server in
            server.setBootStatuses("CP-PEND", [.pending])
            let cp = SimulatedChargePoint(configuration: configuration(server, "CP-PEND"))
            try await cp.withRunning { cp in
                try await cp.waitUntil { $0.registrationStatus == .pending }
                // Nothing but BootNotification while Pending.
                #expect(server.received("CP-PEND").map(\.action) == ["BootNotification"])
                try await cp.waitUntilBooted()
            }
            let actions = server.received("CP-PEND").map(\.action)
            #expect(Array(actions.prefix(2)) == ["BootNotification", "BootNotification"])
        }
    }

    @Test func remoteStartRunsASessionAndRemoteStopEndsIt() async throws {
        try await TestCentralSystem.with { server in
            let id = "CP-REMOTE"
            let cp = SimulatedChargePoint(configuration: configuration(server, id))
            try await cp.withRunning { cp in
                try await waitUntilReady(cp, server)
                let change = try await server.call(id, ChangeConfigurationRequest(key: "MeterValueSampleInterval", value: "1"))
                #expect(change.status == .accepted)
                let before = server.received(id).count

                let start = try await server.call(id, RemoteStartTransactionRequest(connectorId: 1, idTag: "TAG-1"))
                #expect(start.status == .accepted)
                try await server.waitFor(id, "two MeterValues") { r in
                    r.dropFirst(before).filter { $0.action == "MeterValues" }.count >= 2
                }
                let session = Array(server.received(id).dropFirst(before))
                #expect(session[0].action == "StatusNotification" && session[0].status == "Preparing")
                #expect(session[1].action == "StartTransaction" && session[1].payload["idTag"] == "TAG-1")
                #expect(session[2].action == "StatusNotification" && session[2].status == "Charging")
                let meter = session.filter { $0.action == "MeterValues" }
                #expect(meter.allSatisfy { $0.transactionId == 100 })
                let measurands = meter[0].payload["meterValue"]?[0]?["sampledValue"]?.arrayValue?.compactMap { $0["measurand"]?.stringValue }
                #expect(measurands == ["Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage", "SoC"])
                #expect(cp.snapshot.transactionIDs[1] == 100)

                let unknown = try await server.call(id, RemoteStopTransactionRequest(transactionId: 999))
                #expect(unknown.status == .rejected)
                let stopIndex = server.received(id).count
                let stop = try await server.call(id, RemoteStopTransactionRequest(transactionId: 100))
                #expect(stop.status == .accepted)
                try await server.waitFor(id, "Available after stop") { r in
                    r.dropFirst(stopIndex).contains { $0.action == "StatusNotification" && $0.status == "Available" }
                }
                let tail = server.received(id).dropFirst(stopIndex).filter { $0.action != "MeterValues" }
                #expect(tail.map(\.action) == ["StatusNotification", "StopTransaction", "StatusNotification"])
                let stopTx = tail.first { $0.action == "StopTransaction" }
                #expect(stopTx?.transactionId == 100)
                #expect(stopTx?.payload["reason"] == "Remote")
                #expect((stopTx?.payload["transactionData"]?.arrayValue?.count ?? 0) >= 2)
                try await cp.waitUntil { $0.completedTransactions == 1 && $0.status(ofConnector: 1) == .available }
            }
        }
    }

    @Test func transactionMessagesAreQueuedOfflineAndDeliveredInOrder() async throws {
        try await TestCentralSystem.with { server in
            let id = "CP-OFFLINE"
            var config = configuration(server, id)
            config.meterValueInterval = .milliseconds(300)
            let cp = SimulatedChargePoint(configuration: config)
            try await cp.withRunning { cp in
                try await waitUntilReady(cp, server)
                cp.startTransaction(connectorId: 1, idTag: "TAG-A", authorize: true)
                try await server.waitFor(id, "first MeterValues") { r in r.contains { $0.action == "MeterValues" } }

                // The network goes away: the server drops the socket and refuses reconnects.
                server.setRefused(id, true)
                try await server.dropConnection(id)
                try await cp.waitUntil { !$0.isConnected }
                try await cp.waitUntil { $0.queuedTransactionMessages >= 2 }
                cp.stopTransaction(connectorId: 1)
                try await cp.waitUntil { $0.sessionConnectors.isEmpty }
                // A transaction that starts offline gets its id only after reconnecting.
                cp.startTransaction(connectorId: 1, idTag: "TAG-B", authorize: true)
                try await cp.waitUntil { s in s.sessionConnectors == [1] }
                // At least one of its meter values waits in the queue behind its start (the only
                // session now, so any message queued from here on is one of its samples).
                let queuedWithStart = cp.snapshot.queuedTransactionMessages
                try await cp.waitUntil { s in s.queuedTransactionMessages >= queuedWithStart + 1 }
                #expect(cp.snapshot.transactionIDs[1] == nil)
                let deliveredBefore = server.received(id).count

                server.setRefused(id, false)
                try await cp.waitUntil { $0.transactionIDs[1] == 101 }
                cp.stopTransaction(connectorId: 1)
                try await cp.waitUntil { $0.completedTransactions == 2 }

                let all = server.received(id)
                let afterReconnect = all.dropFirst(deliveredBefore).filter {
                    ["StartTransaction", "MeterValues", "StopTransaction"].contains($0.action)
                }
                // Order: rest of tx 100, its stop, the offline start, tx 101's values, its stop.
                let shape = afterReconnect.map { "\($0.action):\($0.transactionId.map(String.init) ?? "-")" }
                let stop100 = try #require(shape.firstIndex(of: "StopTransaction:100"))
                let start = try #require(shape.firstIndex(of: "StartTransaction:-"))
                let stop101 = try #require(shape.firstIndex(of: "StopTransaction:101"))
                #expect(stop100 < start && start < stop101)
                #expect(shape[..<stop100].allSatisfy { $0 == "MeterValues:100" })
                #expect(shape[(start + 1)..<stop101].allSatisfy { $0 == "MeterValues:101" })
                #expect(shape[(start + 1)..<stop101].count >= 1)
                // Everything in creation order: meter timestamps never go backwards.
                let stamps = all.filter { $0.action == "MeterValues" }.compactMap { $0.payload["meterValue"]?[0]?["timestamp"]?.stringValue }
                #expect(stamps == stamps.sorted())
            }
        }
    }

    @Test func answersCentralSystemCalls() async throws {
        try await TestCentralSystem.with { server in
            let id = "CP-CALLS"
            let cp = SimulatedChargePoint(configuration: configuration(server, id))
            try await cp.withRunning { cp in
                try await waitUntilReady(cp, server)
                let all = try await server.call(id, GetConfigurationRequest())
                #expect(all.configurationKey?.contains { $0.key == "HeartbeatInterval" } == true)
                let some = try await server.call(id, GetConfigurationRequest(key: ["NumberOfConnectors", "Nope"]))
                #expect(some.configurationKey?.first?.value == "2")
                #expect(some.unknownKey == ["Nope"])
                #expect(try await server.call(id, ChangeConfigurationRequest(key: "NumberOfConnectors", value: "3")).status == .rejected)
                #expect(try await server.call(id, ChangeConfigurationRequest(key: "Nope", value: "3")).status == .notSupported)
                #expect(try await server.call(id, DataTransferRequest(vendorId: "x")).status == .unknownVendorId)
                #expect(try await server.call(id, ClearCacheRequest()).status == .accepted)
                #expect(try await server.call(id, GetLocalListVersionRequest()).listVersion == 0)
                #expect(try await server.call(id, UnlockConnectorRequest(connectorId: 1)).status == .unlocked)
                #expect(try await server.call(id, ReserveNowRequest(connectorId: 2, expiryDate: Date() + 600, idTag: "T", reservationId: 7)).status == .accepted)
                try await cp.waitUntil { $0.status(ofConnector: 2) == .reserved }
                #expect(try await server.call(id, CancelReservationRequest(reservationId: 7)).status == .accepted)
                let composite = try await server.call(id, GetCompositeScheduleRequest(connectorId: 1, duration: 3600))
                #expect(composite.status == .accepted && composite.chargingSchedule != nil)

                let before = server.received(id).count
                #expect(try await server.call(id, TriggerMessageRequest(requestedMessage: .statusNotification, connectorId: 1)).status == .accepted)
                try await server.waitFor(id, "triggered status") { r in
                    r.dropFirst(before).contains { $0.action == "StatusNotification" && $0.connectorId == 1 }
                }

                let unknown = try await server.call(id, action: "FrobnicateWidget", payload: .emptyObject)
                #expect(unknown.errorCode == .notImplemented)
                let unsupported = try await server.call(id, action: "GetDiagnostics", payload: ["location": "ftp://x"])
                #expect(unsupported.errorCode == .notSupported)
                let invalid = try await server.call(id, action: "RemoteStartTransaction", payload: ["connectorId": "one"])
                #expect(invalid.errorCode != nil)

                cp.setCentralSystemCallHook { action, _ in action == "ClearCache" ? .reject : .standard }
                #expect(try await server.call(id, ClearCacheRequest()).status == .rejected)
                cp.setCentralSystemCallHook { action, _ in action == "ClearCache" ? .callError(.internalError, "boom") : .standard }
                #expect(try await server.call(id, action: "ClearCache", payload: .emptyObject).errorCode == .internalError)
            }
        }
    }

    @Test func resetRebootsAndBootsAgain() async throws {
        try await TestCentralSystem.with { server in
            let id = "CP-RESET"
            let cp = SimulatedChargePoint(configuration: configuration(server, id))
            try await cp.withRunning { cp in
                try await cp.waitUntilBooted()
                #expect(try await server.call(id, ResetRequest(type: .soft)).status == .accepted)
                try await cp.waitUntil { $0.bootAcceptedCount == 2 && $0.isConnected }
                #expect(cp.snapshot.connectionCount == 2)
            }
            #expect(server.received(id).filter { $0.action == "BootNotification" }.count == 2)
        }
    }

    @Test func callErrorAndRawFramesAndInbound() async throws {
        try await TestCentralSystem.with { server in
            let id = "CP-RAW"
            let cp = SimulatedChargePoint(configuration: configuration(server, id))
            try await cp.withRunning { cp in
                try await cp.waitUntilBooted()
                // The test server does not implement DataTransfer: a typed CallError comes back.
                await #expect(throws: CallError.self) { try await cp.call(DataTransferRequest(vendorId: "acme")) }
                do {
                    _ = try await cp.call(DataTransferRequest(vendorId: "acme"))
                } catch let error as CallError {
                    #expect(error.code == .notImplemented)
                }
                try await cp.sendRaw(#"[2,"raw-1","Heartbeat",{}]"#)
                var iterator = cp.inbound.makeAsyncIterator()
                while let frame = await iterator.next() {
                    if frame.contains("\"raw-1\"") { break }
                }
                // Outgoing validation: a too-long idTag never leaves the charger.
                await #expect(throws: SimulatorError.self) {
                    try await cp.call(AuthorizeRequest(idTag: String(repeating: "x", count: 21)))
                }
            }
        }
    }

    @Test func unreachableURLIsAClearError() async throws {
        var config = ChargePointConfiguration(url: "ws://127.0.0.1:1/ocpp", identity: "CP-X")
        config.autoConnect = false
        config.reconnect = false
        let cp = SimulatedChargePoint(configuration: config)
        try await cp.withRunning { cp in
            do {
                try await cp.connect()
                Issue.record("connect succeeded")
            } catch let error as SimulatorError {
                #expect(error.code == .unreachable)
                #expect(error.message.contains("127.0.0.1:1"))
            }
            await #expect(throws: SimulatorError.self) { try await cp.call(HeartbeatRequest()) }
        }
    }

    @Test func refusedUpgradeReportsStatusAndBody() async throws {
        func expectRefused(_ url: String, status: Int, body: String?) async throws {
            var config = ChargePointConfiguration(url: url, identity: "CP-R")
            config.autoConnect = false
            config.reconnect = false
            let cp = SimulatedChargePoint(configuration: config)
            try await cp.withRunning { cp in
                do {
                    try await cp.connect()
                    Issue.record("connect succeeded")
                } catch let error as SimulatorError {
                    #expect(error.code == .upgradeRefused)
                    #expect(error.httpStatus == status)
                    #expect(error.message.contains("HTTP \(status)"))
                    if let body { #expect(error.body == body) }
                }
            }
        }
        // A WebSocket endpoint that declines the upgrade (Hummingbird answers 400).
        try await TestCentralSystem.with { server in
            try await expectRefused("ws://127.0.0.1:\(server.port)/nowhere", status: 400, body: "")
        }
        // A plain HTTP server: 404 for an unknown path, 400 with a body from a route.
        try await TestCentralSystem.withPlainHTTP { port in
            try await expectRefused("ws://127.0.0.1:\(port)/nowhere", status: 404, body: nil)
            try await expectRefused("ws://127.0.0.1:\(port)/refuse", status: 400, body: "unknown charge point")
        }
    }

    @Test func failFastRunThrows() async throws {
        var config = ChargePointConfiguration(url: "ws://127.0.0.1:1/ocpp", identity: "CP-FF")
        config.failFast = true
        let cp = SimulatedChargePoint(configuration: config)
        await #expect(throws: SimulatorError.self) { try await cp.run() }
    }
}
