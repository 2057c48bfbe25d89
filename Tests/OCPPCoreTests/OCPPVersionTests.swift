import OCPPCore
import Testing

@Suite struct OCPPVersionTests {
    @Test func subprotocolTokensAreSpelledAsOCPPJSpellsThem() {
        #expect(OCPPVersion.ocpp16.subprotocol == "ocpp1.6")
        #expect(OCPPVersion.ocpp201.subprotocol == "ocpp2.0.1")
        #expect(OCPPVersion(subprotocol: "ocpp1.6") == .ocpp16)
        #expect(OCPPVersion(subprotocol: "OCPP1.6") == nil)
    }
}
