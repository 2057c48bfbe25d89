import Testing
@testable import OCPPCore

@Suite struct SchemaTests {
    static let schemaText = #"""
    {
      "$schema": "http://json-schema.org/draft-04/schema#",
      "id": "urn:OCPP:1.6:2019:12:MeterValuesRequest",
      "title": "MeterValuesRequest",
      "type": "object",
      "definitions": {
        "SampledValue": {
          "type": "object",
          "javaType": "SampledValue",
          "properties": {
            "value": { "type": "string" },
            "context": { "type": "string", "enum": ["Sample.Periodic", "Sample.Clock"] },
            "unit": { "type": "string", "maxLength": 5, "minLength": 1 }
          },
          "additionalProperties": false,
          "required": ["value"]
        }
      },
      "properties": {
        "connectorId": { "type": "integer", "minimum": 0, "maximum": 10 },
        "transactionId": { "type": "integer" },
        "ratio": { "type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true },
        "power": { "type": "number", "multipleOf": 0.1 },
        "count": { "type": "integer", "multipleOf": 5 },
        "timestamp": { "type": "string", "format": "date-time" },
        "nullableName": { "type": ["string", "null"] },
        "meterValue": {
          "type": "array",
          "minItems": 1,
          "maxItems": 2,
          "items": {
            "type": "object",
            "properties": {
              "timestamp": { "type": "string", "format": "date-time" },
              "sampledValue": { "type": "array", "items": { "$ref": "#/definitions/SampledValue" } }
            },
            "additionalProperties": false,
            "required": ["timestamp", "sampledValue"]
          }
        },
        "child": { "$ref": "#" },
        "free": { "type": "object", "additionalProperties": { "type": "integer" } }
      },
      "additionalProperties": false,
      "required": ["connectorId"]
    }
    """#

    let schema: JSONSchema
    init() throws { schema = try JSONSchema(jsonText: Self.schemaText) }

    func violations(_ json: String) throws -> [SchemaViolation] {
        try schema.validate(JSONValue.parse(json))
    }

    func single(_ json: String) throws -> SchemaViolation? {
        let v = try violations(json)
        #expect(v.count == 1, "expected exactly one violation for \(json), got \(v)")
        return v.first
    }

    @Test func validPayloads() throws {
        #expect(try violations(#"{"connectorId":1}"#).isEmpty)
        #expect(try violations(#"""
            {"connectorId":0,"transactionId":5.0,"ratio":0.5,"power":23.3,"count":15,"timestamp":"2024-02-29T23:59:60.123+01:00",
             "nullableName":null,"meterValue":[{"timestamp":"2019-08-24T14:15:22Z",
             "sampledValue":[{"value":"1.5","context":"Sample.Clock","unit":"kWh"},{"value":"2"}]}],
             "child":{"connectorId":2,"child":{"connectorId":3}},"free":{"a":1,"b":2}}
            """#).isEmpty)
    }

    @Test func required() throws {
        let v = try single(#"{}"#)
        #expect(v?.kind == .required && v?.path == "$.connectorId")
        #expect(v?.message == #"required property "connectorId" is missing"#)
        #expect(v?.errorCode(for: .ocpp16) == .occurrenceConstraintViolation)
        #expect(v?.errorCode(for: .ocpp16).wireName(for: .ocpp16) == "OccurenceConstraintViolation")
        let nested = try single(#"{"connectorId":1,"meterValue":[{"timestamp":"2019-08-24T14:15:22Z","sampledValue":[{"value":"1"},{"unit":"W"}]}]}"#)
        #expect(nested?.kind == .required && nested?.path == "$.meterValue[0].sampledValue[1].value")
    }

    @Test func type() throws {
        let v = try single(#"{"connectorId":"1"}"#)
        #expect(v?.kind == .type && v?.path == "$.connectorId")
        #expect(v?.message == #"expected integer, got string "1""#)
        #expect(v?.errorCode(for: .ocpp16) == .typeConstraintViolation)
        #expect(try single(#"{"connectorId":1.5}"#)?.kind == .type)
        #expect(try violations(#"{"connectorId":1.0}"#).isEmpty)       // integral double is an integer
        #expect(try violations(#"{"connectorId":1,"ratio":0.25}"#).isEmpty)
        #expect(try single(#"{"connectorId":1,"nullableName":5}"#)?.message == "expected string or null, got integer 5")
        #expect(try single(#"{"connectorId":1,"meterValue":{}}"#)?.kind == .type)
        #expect(try single(#"[]"#)?.kind == .type)
        #expect(try single(#"{"connectorId":1,"free":{"a":"x"}}"#)?.path == "$.free.a")
        #expect(try single(#"{"connectorId":1,"child":{"connectorId":true}}"#)?.path == "$.child.connectorId")
    }

    @Test func enumKeyword() throws {
        let v = try single(#"{"connectorId":1,"meterValue":[{"timestamp":"2019-08-24T14:15:22Z","sampledValue":[{"value":"1","context":"Bogus"}]}]}"#)
        #expect(v?.kind == .enum && v?.path == "$.meterValue[0].sampledValue[0].context")
        #expect(v?.message == #"value "Bogus" is not one of the allowed values: "Sample.Periodic", "Sample.Clock""#)
        #expect(v?.errorCode(for: .ocpp16) == .propertyConstraintViolation)
    }

    @Test func lengthCountsUnicodeScalars() throws {
        let base = #"{"connectorId":1,"meterValue":[{"timestamp":"2019-08-24T14:15:22Z","sampledValue":[{"value":"1","unit":"#
        #expect(try violations(base + #""ééééé"}]}]}"#).isEmpty)  // 5 scalars, 10 bytes
        let long = try single(base + #""abcdef"}]}]}"#)
        #expect(long?.kind == .length && long?.message == "string length 6 exceeds maxLength 5")
        #expect(try single(base + "\"\"}]}]}")?.message == "string length 0 is less than minLength 1")
        #expect(long?.errorCode(for: .ocpp16) == .propertyConstraintViolation)
    }

    @Test func range() throws {
        #expect(try single(#"{"connectorId":-1}"#)?.message == "value -1 is less than minimum 0")
        #expect(try single(#"{"connectorId":11}"#)?.message == "value 11 is greater than maximum 10")
        #expect(try violations(#"{"connectorId":10}"#).isEmpty)
        #expect(try single(#"{"connectorId":1,"ratio":0}"#)?.message == "value 0 must be greater than 0")
        #expect(try single(#"{"connectorId":1,"ratio":1}"#)?.message == "value 1 must be less than 1")
        let v = try single(#"{"connectorId":1,"ratio":1.5}"#)
        #expect(v?.kind == .range && v?.errorCode(for: .ocpp201) == .propertyConstraintViolation)
    }

    @Test func multipleOf() throws {
        for ok in ["0.3", "23.3", "0", "-0.7", "100", "1e2", "0.30000000000000004"] {
            #expect(try violations(#"{"connectorId":1,"power":\#(ok)}"#).isEmpty, "\(ok)")
        }
        let v = try single(#"{"connectorId":1,"power":0.15}"#)
        #expect(v?.kind == .multipleOf && v?.message == "value 0.15 is not a multiple of 0.1")
        #expect(v?.errorCode(for: .ocpp16) == .propertyConstraintViolation)
        #expect(try violations(#"{"connectorId":1,"count":9223372036854775805}"#).isEmpty)
        #expect(try single(#"{"connectorId":1,"count":7}"#)?.kind == .multipleOf)
    }

    @Test func itemsCount() throws {
        let mv = #"{"timestamp":"2019-08-24T14:15:22Z","sampledValue":[]}"#
        let few = try single(#"{"connectorId":1,"meterValue":[]}"#)
        #expect(few?.kind == .items && few?.message == "array has 0 items, fewer than minItems 1" && few?.path == "$.meterValue")
        let many = try single(#"{"connectorId":1,"meterValue":[\#(mv),\#(mv),\#(mv)]}"#)
        #expect(many?.kind == .items && many?.message == "array has 3 items, more than maxItems 2")
        #expect(many?.errorCode(for: .ocpp16) == .propertyConstraintViolation)
    }

    @Test func additionalProperties() throws {
        let v = try single(#"{"connectorId":1,"bogus":true}"#)
        #expect(v?.kind == .additionalProperty && v?.path == "$.bogus" && v?.message == #"property "bogus" is not allowed"#)
        #expect(v?.errorCode(for: .ocpp16) == .formationViolation)
        #expect(v?.errorCode(for: .ocpp16).wireName(for: .ocpp16) == "FormationViolation")
        #expect(v?.errorCode(for: .ocpp201).wireName(for: .ocpp201) == "FormatViolation")
        let weird = try single(#"{"connectorId":1,"a b":1}"#)
        #expect(weird?.path == #"$["a b"]"#)
    }

    @Test func dateTime() throws {
        let valid = ["2019-08-24T14:15:22Z", "2019-08-24T14:15:22.5Z", "2019-08-24t14:15:22.123456789z", "2019-08-24T14:15:22+05:30",
                     "2019-08-24T14:15:22-0800", "2019-08-24T14:15:22", "2019-08-24T14:15:22.000", "2020-02-29T00:00:00Z", "2016-12-31T23:59:60Z"]
        let invalid = ["2019-08-24 14:15:22Z", "2019-08-24", "2019-08-24T14:15Z", "2019-13-01T00:00:00Z", "2019-02-29T00:00:00Z",
                       "2019-04-31T00:00:00Z", "2019-08-24T24:00:00Z", "2019-08-24T14:60:00Z", "2019-08-24T14:15:22.Z",
                       "2019-08-24T14:15:22ZZ", "2019-08-24T14:15:22+5:00", "19-08-24T14:15:22Z", "2019-08-24T14:15:22+25:00", "", "now"]
        for s in valid { #expect(DateTimeFormat.isValid(s), "\(s)") }
        for s in invalid { #expect(!DateTimeFormat.isValid(s), "\(s)") }
        let v = try single(#"{"connectorId":1,"timestamp":"yesterday"}"#)
        #expect(v?.kind == .format && v?.message == #""yesterday" is not a valid RFC 3339 date-time"#)
        #expect(v?.errorCode(for: .ocpp16) == .propertyConstraintViolation)
    }

    @Test func orderingAndLimit() throws {
        // required first, then members in instance order; first violation decides the code
        let v = try violations(#"{"bogus":1,"ratio":"x"}"#)
        #expect(v.map(\.kind) == [.required, .additionalProperty, .type])
        #expect(v.errorCode(for: .ocpp16) == .occurrenceConstraintViolation)
        let v2 = try violations(#"{"connectorId":1,"ratio":"x","bogus":1}"#)
        #expect(v2.errorCode(for: .ocpp16) == .typeConstraintViolation)
        #expect(v2.summary().contains("$.ratio"))
        // cap
        var big = JSONObject()
        big["connectorId"] = 1
        for i in 0..<50 { big["x\(i)"] = .integer(Int64(i)) }
        #expect(schema.validate(.object(big)).count == 10)
        #expect(schema.validate(.object(big), maxViolations: 3).count == 3)
        #expect(!schema.isValid(.object(big)))
        #expect([SchemaViolation]().errorCode(for: .ocpp16) == nil)
    }

    @Test func refForms() throws {
        // $ref to a nested definition via JSON pointer escapes, ref siblings ignored, tuple items.
        let s = try JSONSchema(jsonText: #"""
            {"definitions":{"a/b":{"type":"string"},"Pos":{"$ref":"#/definitions/a~1b","type":"integer"}},
             "type":"array","items":[{"$ref":"#/definitions/Pos"},{"type":"integer"}]}
            """#)
        #expect(s.isValid(["x", 1]))
        #expect(s.isValid(["x", 1, "extra"]))
        #expect(s.validate([1, 1]).first?.path == "$[0]")
        #expect(s.validate(["x", "y"]).first?.kind == .type)
    }

    @Test func compileErrors() {
        func fails(_ text: String) -> Bool {
            do { _ = try JSONSchema(jsonText: text); return false } catch { return !error.message.isEmpty }
        }
        #expect(fails(#"{"type":"strin"}"#))
        #expect(fails(##"{"$ref":"#/definitions/Nope"}"##))
        #expect(fails(#"{"$ref":"other.json#/x"}"#))
        #expect(fails(#"{"required":"a"}"#))
        #expect(fails(#"{"minLength":-1}"#))
        #expect(fails(#"{"multipleOf":0}"#))
        #expect(fails(#"{"properties":{"a":5}}"#))
        #expect(fails(##"{"definitions":{"A":{"$ref":"#/definitions/B"},"B":{"$ref":"#/definitions/A"}}}"##))
        #expect(fails(#"{"type":"object",}"#))
        #expect(!fails(#"{"type":"object","pattern":"^a","title":"t","javaType":"X","description":"d","format":"uri"}"#))
    }

    @Test func emptySchemaAcceptsAnything() throws {
        let s = try JSONSchema([:])
        for v: JSONValue in [nil, true, 1, 1.5, "s", [1], ["a": 1]] { #expect(s.isValid(v)) }
    }
}
