import ChargepathApp
import ChargepathServer
import Foundation
import OCPPCore
import Testing

@Suite(.timeLimit(.minutes(3))) struct OpenAPITests {
    @Test func theDocumentDescribesEveryRouteAndNothingElse() {
        let served = Set(ChargepathApp.operatorRoutes())
        let documented = Set(OpenAPIDocument.operations.map { "\($0.method) \($0.path)" })
        #expect(served.subtracting(documented).isEmpty, "routes missing from the OpenAPI document")
        #expect(documented.subtracting(served).isEmpty, "documented routes that do not exist")
        #expect(served.count > 10)
    }

    @Test func theDocumentIsServedWithoutATokenAndIsOpenAPI31() async throws {
        try await TestServer.with { server in
            let response = try await server.api.request("GET", "/api/v1/openapi.json", authorization: "")
            #expect(response.status == 200)
            let document = try JSONValue.parse(response.body)
            #expect(document["openapi"] == "3.1.0")
            #expect(document["paths"]?["/api/v1/charge-points/{chargePointId}/calls/{action}"]?["post"]?["responses"]?["504"] != nil)
        }
    }
}
