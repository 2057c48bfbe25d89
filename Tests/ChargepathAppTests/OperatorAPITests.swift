import Foundation
import Testing

@Suite(.timeLimit(.minutes(3))) struct OperatorAPITests {
    @Test func everyOperatorEndpointNeedsTheBearerToken() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            for (method, path) in [("GET", "/api/v1/connections"), ("GET", "/@connections/abc"), ("POST", "/@connections/abc"), ("DELETE", "/@connections/abc")] {
                let missing = try await server.api.request(method, path, authorization: "")
                #expect(missing.status == 401, "\(method) \(path) without a token")
                let wrong = try await server.api.request(method, path, authorization: "Bearer test-token-0123456789abcdeX")
                #expect(wrong.status == 401, "\(method) \(path) with a wrong token")
                let basic = try await server.api.request(method, path, authorization: "Basic dGVzdA==")
                #expect(basic.status == 401)
            }
            #expect(try await server.api.request("GET", "/api/v1/connections").status == 200)
        }
    }

    @Test func healthAndReadinessNeedNoToken() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.api.request("GET", "/health", authorization: "").status == 200)
            #expect(try await server.api.request("GET", "/ready", authorization: "").status == 200)
        }
    }

    @Test func aMalformedConnectionIdIsABadRequest() async throws {
        try await TestServer.with { (server: TestServer) async throws in
            #expect(try await server.api.request("GET", "/@connections/not%20an%20id").status == 400)
        }
    }
}
