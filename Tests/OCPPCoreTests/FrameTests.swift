import Testing
@testable import OCPPCore

@Suite struct FrameTests {
    func err(_ text: String, _ version: OCPPVersion = .ocpp16) -> FrameDecodingError? {
        if case .failure(let e) = OCPPFrame.decode(text: text, version: version) { return e }
        return nil
    }

    @Test func decodeValidFrames() throws {
        let call = try OCPPFrame.decode(text: #"[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#).get()
        #expect(call == .call(id: "19223201", action: "BootNotification", payload: ["chargePointVendor": "V", "chargePointModel": "M"]))
        #expect(call.id == "19223201" && call.messageType == .call)

        let res = try OCPPFrame.decode(text: #"[3, "a", {"status":"Accepted"}]"#).get()
        #expect(res == .callResult(id: "a", payload: ["status": "Accepted"]))

        let e = try OCPPFrame.decode(text: #"[4,"b","NotImplemented","nope",{"x":1}]"#).get()
        #expect(e == .callError(id: "b", code: "NotImplemented", description: "nope", details: ["x": 1]))
        #expect(e.errorCode == .notImplemented)

        let bytes = try OCPPFrame.decode(bytes: Array(#"[3,"a",{}]"#.utf8)).get()
        #expect(bytes == .callResult(id: "a", payload: .emptyObject))
    }

    @Test func leniency() throws {
        #expect(try OCPPFrame.decode(text: #"[2,"1","Heartbeat",null]"#).get() == .call(id: "1", action: "Heartbeat", payload: .emptyObject))
        #expect(try OCPPFrame.decode(text: #"[3,"1",null]"#).get() == .callResult(id: "1", payload: .emptyObject))
        #expect(try OCPPFrame.decode(text: #"[4,"1","GenericError",""]"#).get()
            == .callError(id: "1", code: "GenericError", description: "", details: .emptyObject))
        #expect(try OCPPFrame.decode(text: #"[4,"1","GenericError","",null]"#).get().payload == .emptyObject)
        let unknown = try OCPPFrame.decode(text: #"[4,"1","VendorSpecificBoom","x",{}]"#).get()
        #expect(unknown == .callError(id: "1", code: "VendorSpecificBoom", description: "x", details: .emptyObject))
        #expect(unknown.errorCode == .genericError)
        // 2.x spellings understood
        #expect(try OCPPFrame.decode(text: #"[4,"1","FormatViolation","",{}]"#).get().errorCode == .formationViolation)
        #expect(try OCPPFrame.decode(text: #"[4,"1","OccurenceConstraintViolation","",{}]"#).get().errorCode == .occurrenceConstraintViolation)
    }

    @Test func unreadable() {
        for t in ["not json", "{\"a\":1}", "\"x\"", "[]", "[2]", "[2,1,\"Heartbeat\",{}]", "[2,null,\"A\",{}]",
                  "", "[\"2\"", "[2,\"unterminated"] {
            guard case .unreadable(let reason)? = err(t) else { Issue.record("expected unreadable for \(t)"); continue }
            #expect(!reason.isEmpty)
            #expect(err(t)?.disposition(for: .ocpp16) == .drop(reason: reason))
        }
    }

    @Test func unknownMessageType() {
        #expect(err(#"[5,"abc","X",{}]"#) == .unknownMessageType(id: "abc", messageTypeId: 5))
        #expect(err(#"[-1,"abc"]"#) == .unknownMessageType(id: "abc", messageTypeId: -1))
        guard case .drop? = err(#"[7,"abc",{}]"#)?.disposition(for: .ocpp16) else { Issue.record("1.6 should drop"); return }
        #expect(err(#"[7,"abc",{}]"#, .ocpp201)?.disposition(for: .ocpp201)
            == .reply(.callError(id: "abc", code: "MessageTypeNotSupported", description: "Message type 7 is not supported", details: .emptyObject)))
    }

    @Test func malformedShape() {
        let cases: [(String, Int64?)] = [
            (#"[2,"id1","Heartbeat"]"#, 2),                 // too few
            (#"[2,"id1","Heartbeat",{},1]"#, 2),            // too many
            (#"[2,"id1",5,{}]"#, 2),                        // action not string
            (#"[2,"id1","",{}]"#, 2),                       // empty action
            (#"[2,"id1","Heartbeat",[]]"#, 2),              // payload not object
            (#"[2,"id1","Heartbeat","x"]"#, 2),
            (#"["2","id1","Heartbeat",{}]"#, nil),          // type not integer
            (#"[2.0,"id1","Heartbeat",{}]"#, nil),
            (#"[2,"","Heartbeat",{}]"#, 2),                  // empty id
            ("[2,\"\(String(repeating: "x", count: 37))\",\"Heartbeat\",{}]", 2), // id too long
            (#"[3,"id1"]"#, 3),
            (#"[3,"id1",{},{}]"#, 3),
            (#"[3,"id1",42]"#, 3),
            (#"[4,"id1",1,"d",{}]"#, 4),
            (#"[4,"id1","GenericError",null,{}]"#, 4),
            (#"[4,"id1","GenericError"]"#, 4),
        ]
        for (text, type) in cases {
            guard case .malformed(let id, let t, let code, let reason)? = err(text) else {
                Issue.record("expected malformed for \(text), got \(String(describing: err(text)))"); continue
            }
            #expect(id == (text.hasPrefix(#"[2,"","#) ? "" : (text.contains("xxxx") ? String(repeating: "x", count: 37) : "id1")))
            #expect(t == type)
            #expect(code == .formationViolation)
            #expect(!reason.isEmpty)
        }
        // 2.x: frame shape errors are RpcFrameworkError
        guard case .malformed(_, _, let code, _)? = err(#"[2,"id1","Heartbeat"]"#, .ocpp201) else { Issue.record("x"); return }
        #expect(code == .rpcFrameworkError)
    }

    @Test func malformedInvalidJSONWithRecoverableID() {
        let e = err(#"[2, "abc-1", "Authorize", {"idTag": "x",}]"#)
        guard case .malformed(let id, let t, let code, let reason)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(id == "abc-1" && t == 2 && code == .formationViolation)
        #expect(reason.contains("invalid JSON"))
        guard case .reply(let frame)? = e?.disposition(for: .ocpp16),
              case .callError(let rid, let rcode, _, let details) = frame else { Issue.record("expected reply"); return }
        #expect(rid == "abc-1" && rcode == "FormationViolation" && details == .emptyObject)
        // Same in 2.0.1 → FormatViolation spelling
        guard case .reply(let f2)? = err(#"[2,"abc-1","Authorize",{]"#, .ocpp201)?.disposition(for: .ocpp201),
              case .callError(_, let c2, _, _) = f2 else { Issue.record("expected reply"); return }
        #expect(c2 == "FormatViolation")
        // truncated frame: id still recoverable
        #expect(err(#"[2,"a""#) == .malformed(id: "a", messageTypeId: 2, errorCode: .formationViolation,
                                            reason: "invalid JSON: JSON parse error at byte 6: unexpected end of input in array, expected ',' or ']'"))
        // invalid bytes with a readable header
        if case .failure(.malformed(let bid, _, _, _)) = OCPPFrame.decode(bytes: Array(#"[2,"q","A",{"a":""#.utf8) + [0xFF, 0x22, 0x7D, 0x5D]) {
            #expect(bid == "q")
        } else { Issue.record("expected malformed for invalid UTF-8") }
    }

    @Test func malformedResponsesFailPendingCall() {
        #expect(err(#"[3,"id9",42]"#)?.disposition(for: .ocpp16) == .failPendingCall(id: "id9", reason: "payload (element 2) is a integer, expected an object"))
        guard case .failPendingCall(let id, _)? = err(#"[3,"id9",{"a":}]"#)?.disposition(for: .ocpp16) else {
            Issue.record("expected failPendingCall"); return
        }
        #expect(id == "id9")
    }

    @Test func encode() throws {
        #expect(OCPPFrame.call(id: "1", action: "Reset", payload: ["type": "Hard"]).encode() == #"[2,"1","Reset",{"type":"Hard"}]"#)
        #expect(OCPPFrame.callResult(id: "1", payload: .emptyObject).encode() == #"[3,"1",{}]"#)
        #expect(OCPPFrame.callError(id: "1", code: .occurrenceConstraintViolation, description: "missing", version: .ocpp16).encode()
            == #"[4,"1","OccurenceConstraintViolation","missing",{}]"#)
        #expect(OCPPFrame.callError(id: "1", code: .occurrenceConstraintViolation, description: "missing", version: .ocpp201).encode()
            == #"[4,"1","OccurrenceConstraintViolation","missing",{}]"#)
        for f: OCPPFrame in [.call(id: "x", action: "A", payload: ["k": [1, 2]]), .callResult(id: "y", payload: ["s": "é\n"]),
                             .callError(id: "z", code: "Weird", description: "d", details: ["a": nil])] {
            #expect(try OCPPFrame.decode(text: f.encode()).get() == f)
        }
    }

    struct Reset: OCPPRequest {
        typealias Response = ResetConf
        static let action = "Reset"
        var type: String
    }
    struct ResetConf: OCPPPayload { var status: String }

    @Test func typedHelpers() throws {
        let f = try OCPPFrame.call(id: "7", request: Reset(type: "Soft"))
        #expect(f.encode() == #"[2,"7","Reset",{"type":"Soft"}]"#)
        let r = try OCPPFrame.callResult(id: "7", response: ResetConf(status: "Accepted"))
        #expect(try r.payload.decode(ResetConf.self) == ResetConf(status: "Accepted"))
    }

    @Test func errorCodes() {
        #expect(OCPPErrorCode.formationViolation.wireName(for: .ocpp16) == "FormationViolation")
        #expect(OCPPErrorCode.formationViolation.wireName(for: .ocpp201) == "FormatViolation")
        #expect(OCPPErrorCode.occurrenceConstraintViolation.wireName(for: .ocpp16) == "OccurenceConstraintViolation")
        #expect(OCPPErrorCode.occurrenceConstraintViolation.wireName(for: .ocpp21) == "OccurrenceConstraintViolation")
        #expect(OCPPErrorCode.messageTypeNotSupported.wireName(for: .ocpp201) == "MessageTypeNotSupported")
        #expect(OCPPErrorCode.rpcFrameworkError.wireName(for: .ocpp201) == "RpcFrameworkError")
        for v in OCPPVersion.allCases {
            for c in OCPPErrorCode.allCases {
                let w = c.wireName(for: v)
                if v != .ocpp16 || (c != .messageTypeNotSupported && c != .rpcFrameworkError) {
                    #expect(OCPPErrorCode(wireName: w) == c)
                }
            }
        }
        #expect(OCPPErrorCode(wireName: "Nope") == nil)
        #expect(OCPPErrorCode.resolving("Nope") == .genericError)
    }

    @Test func versions() {
        #expect(OCPPVersion.ocpp16.subprotocol == "ocpp1.6")
        #expect(OCPPVersion.ocpp201.subprotocol == "ocpp2.0.1")
        #expect(OCPPVersion.ocpp21.subprotocol == "ocpp2.1")
        #expect(OCPPVersion(subprotocol: "ocpp2.0.1") == .ocpp201)
        #expect(OCPPVersion.negotiate(offered: ["ocpp2.0.1", "OCPP1.6"]) == .ocpp16)
        #expect(OCPPVersion.negotiate(offered: ["ocpp2.0.1", "ocpp1.6"], supported: [.ocpp201, .ocpp16]) == .ocpp201)
        #expect(OCPPVersion.negotiate(offered: ["ocpp1.5"]) == nil)
    }

    @Test func messageIDs() {
        var g = MessageIDGenerator()
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let id = g.next()
            #expect(id.count <= 36)
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        var g2 = MessageIDGenerator()
        #expect(g2.next() != MessageIDGenerator().prefix + "-1" || g2.prefix != g.prefix)
        var fixed = MessageIDGenerator(prefix: "p")
        #expect(fixed.next() == "p-1")
        #expect(MessageIDGenerator.uuid().count == 36)
    }
}
