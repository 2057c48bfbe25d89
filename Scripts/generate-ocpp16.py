#!/usr/bin/env python3
"""Generate typed Swift messages for OCPP 1.6J from the official OCA JSON schemas.

Usage:
    python3 Scripts/generate-ocpp16.py [SCHEMA_DIR [OUTPUT_DIR]] [--check]

Defaults (relative to the repository root, i.e. the parent of Scripts/):
    SCHEMA_DIR = ocpp-schemas/v16
    OUTPUT_DIR = Sources/OCPP16/Generated

--check regenerates in memory and exits 1 if any file in OUTPUT_DIR differs,
is missing or is stale (an extra *.swift file). Nothing is written in --check mode.

Python 3 standard library only. Output is deterministic.
"""

import argparse
import json
import os
import re
import sys

# ---------------------------------------------------------------------------
# Action catalogue (declaration order of OCPP16Action; also the precedence
# order for type naming: the first occurrence of a type name keeps it).
# ---------------------------------------------------------------------------

CORE_ACTIONS = [
    "Authorize", "BootNotification", "CancelReservation", "ChangeAvailability",
    "ChangeConfiguration", "ClearCache", "ClearChargingProfile", "DataTransfer",
    "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics",
    "GetLocalListVersion", "Heartbeat", "MeterValues", "RemoteStartTransaction",
    "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList",
    "SetChargingProfile", "StartTransaction", "StatusNotification",
    "StopTransaction", "TriggerMessage", "UnlockConnector", "UpdateFirmware",
]

SECURITY_ACTIONS = [
    "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetInstalledCertificateIds", "GetLog", "InstallCertificate",
    "LogStatusNotification", "SecurityEventNotification", "SignCertificate",
    "SignedFirmwareStatusNotification", "SignedUpdateFirmware",
]

ACTIONS = CORE_ACTIONS + SECURITY_ACTIONS

# Initiated by the Charge Point (OCPP 1.6 spec + Security Whitepaper ed. 3).
CP_TO_CS = {
    "Authorize", "BootNotification", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "Heartbeat", "MeterValues",
    "StartTransaction", "StatusNotification", "StopTransaction",
    "SecurityEventNotification", "SignCertificate",
    "SignedFirmwareStatusNotification", "LogStatusNotification",
}
BOTH_DIRECTIONS = {"DataTransfer"}

# ---------------------------------------------------------------------------
# Naming tables
# ---------------------------------------------------------------------------

# Inline string enums: (owning struct base name, property) -> type name.
# Names follow the OCPP 1.6 specification, chapter 7 (Types).
ENUM_NAMES = {
    ("IdTagInfo", "status"): "AuthorizationStatus",
    ("BootNotificationResponse", "status"): "RegistrationStatus",
    ("CancelReservationResponse", "status"): "CancelReservationStatus",
    ("ChangeAvailabilityRequest", "type"): "AvailabilityType",
    ("ChangeAvailabilityResponse", "status"): "AvailabilityStatus",
    ("ChangeConfigurationResponse", "status"): "ConfigurationStatus",
    ("ClearCacheResponse", "status"): "ClearCacheStatus",
    ("ClearChargingProfileResponse", "status"): "ClearChargingProfileStatus",
    ("DataTransferResponse", "status"): "DataTransferStatus",
    ("DiagnosticsStatusNotificationRequest", "status"): "DiagnosticsStatus",
    ("FirmwareStatusNotificationRequest", "status"): "FirmwareStatus",
    ("GetCompositeScheduleResponse", "status"): "GetCompositeScheduleStatus",
    ("RemoteStartTransactionResponse", "status"): "RemoteStartStopStatus",
    ("RemoteStopTransactionResponse", "status"): "RemoteStartStopStatus",
    ("ReserveNowResponse", "status"): "ReservationStatus",
    ("ResetRequest", "type"): "ResetType",
    ("ResetResponse", "status"): "ResetStatus",
    ("SendLocalListRequest", "updateType"): "UpdateType",
    ("SendLocalListResponse", "status"): "UpdateStatus",
    ("SetChargingProfileResponse", "status"): "ChargingProfileStatus",
    ("StatusNotificationRequest", "errorCode"): "ChargePointErrorCode",
    ("StatusNotificationRequest", "status"): "ChargePointStatus",
    ("StopTransactionRequest", "reason"): "Reason",
    ("TriggerMessageRequest", "requestedMessage"): "MessageTrigger",
    ("TriggerMessageResponse", "status"): "TriggerMessageStatus",
    ("UnlockConnectorResponse", "status"): "UnlockStatus",
}

# Inline string enums named by property alone (wherever they occur).
ENUM_NAMES_BY_PROPERTY = {
    "chargingProfilePurpose": "ChargingProfilePurposeType",
    "chargingProfileKind": "ChargingProfileKindType",
    "recurrencyKind": "RecurrencyKindType",
    "chargingRateUnit": "ChargingRateUnitType",
    "context": "ReadingContext",
    "format": "ValueFormat",
    "measurand": "Measurand",
    "phase": "Phase",
    "location": "Location",
    "unit": "UnitOfMeasure",
}

# Inline objects: property -> struct name (default: property name capitalised).
STRUCT_NAMES_BY_PROPERTY = {
    "csChargingProfiles": "ChargingProfile",
    "chargingProfile": "ChargingProfile",
    "localAuthorizationList": "AuthorizationData",
    "transactionData": "MeterValue",
}

# $ref definitions (security extension): explicit renames; otherwise a
# trailing "EnumType" / "Type" is dropped (CertificateHashDataType ->
# CertificateHashData, HashAlgorithmEnumType -> HashAlgorithm).
DEFINITION_NAMES = {
    "LogEnumType": "LogType",
}

# Spec-name aliases emitted next to the type they alias.
TYPE_ALIASES = {
    "ConfigurationKey": ["KeyValue"],
}

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate",
    "func", "import", "init", "inout", "internal", "let", "open", "operator",
    "private", "precedencegroup", "protocol", "public", "rethrows", "static",
    "struct", "subscript", "typealias", "var", "break", "case", "catch",
    "continue", "default", "defer", "do", "else", "fallthrough", "for",
    "guard", "if", "in", "repeat", "return", "throw", "switch", "where",
    "while", "Any", "as", "await", "false", "is", "nil", "self", "Self",
    "super", "throws", "true", "try", "_", "some", "any", "consume",
    "borrowing", "consuming", "copy", "discard", "each",
}

IGNORED_SHAPE_KEYS = {"javaType", "description", "additionalItems", "$id",
                      "$schema", "title", "definitions"}

HEADER = "// Generated by Scripts/generate-ocpp16.py -- DO NOT EDIT.\n"


class GeneratorError(Exception):
    pass


# ---------------------------------------------------------------------------
# Identifier helpers
# ---------------------------------------------------------------------------

def upper_first(s):
    return s[:1].upper() + s[1:]


def lower_first_token(t):
    m = re.match(r"[A-Z]+", t)
    if not m:
        return t
    run = m.group(0)
    if len(run) == len(t):
        return t.lower()
    nxt = t[len(run)]
    if nxt.islower() and len(run) > 1:
        # "EVDisconnected" -> "evDisconnected"
        return run[:-1].lower() + t[len(run) - 1:]
    # "SuspendedEVSE" -> "suspendedEVSE", "L1" -> "l1"
    return run.lower() + t[len(run):]


def lower_camel(raw):
    """'Energy.Active.Import.Register' -> 'energyActiveImportRegister',
    'L1-N' -> 'l1N', 'SuspendedEVSE' -> 'suspendedEVSE', 'kWh' -> 'kWh'."""
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", raw) if t]
    if not tokens:
        return "empty"
    name = lower_first_token(tokens[0]) + "".join(upper_first(t) for t in tokens[1:])
    if name[0].isdigit():
        name = "_" + name
    return name


def swift_ident(name):
    return "`%s`" % name if name in SWIFT_KEYWORDS else name


def swift_string_literal(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def swift_raw_multiline(text):
    """Exact raw multi-line literal. CRs are written as the raw escape so
    CRLF files survive the compiler's line-ending normalisation."""
    n = 1
    while ("\\" + "#" * n) in text or ('"""' + "#" * n) in text:
        n += 1
    hashes = "#" * n
    body = text.replace("\r", "\\" + hashes + "r")
    return hashes + '"""\n' + body + '\n"""' + hashes


# ---------------------------------------------------------------------------
# Type model
# ---------------------------------------------------------------------------

class Prim:
    def __init__(self, swift):
        self.swift = swift


class ArrayOf:
    def __init__(self, item):
        self.item = item


class Named:
    def __init__(self, typedef):
        self.typedef = typedef


class TypeDef:
    def __init__(self, kind, base_name, shape):
        self.kind = kind          # "struct" | "enum"
        self.base_name = base_name
        self.shape = shape
        self.fields = []          # struct: list of Field
        self.values = []          # enum: raw values
        self.actions = []         # actions that use it, in first-use order
        self.name = None          # final Swift name
        self.source = None        # "Action.json#/path" of first occurrence

    def add_action(self, action):
        if action not in self.actions:
            self.actions.append(action)


class Field:
    def __init__(self, name, tref, required, node):
        self.name = name
        self.tref = tref
        self.required = required
        self.node = node


def shape_of(node, defs):
    """Canonical, hashable structural description of a schema node."""
    if "$ref" in node:
        return shape_of(resolve_ref(node["$ref"], defs), defs)
    t = node.get("type")
    if "enum" in node:
        return ("enum", t, tuple(node["enum"]))
    if t == "object":
        props = node.get("properties", {})
        return ("object",
                tuple(sorted((k, shape_of(v, defs)) for k, v in props.items())),
                tuple(sorted(node.get("required", []))))
    if t == "array":
        return ("array", shape_of(node["items"], defs), node.get("minItems"),
                node.get("maxItems"))
    return (t, node.get("format"), node.get("maxLength"), node.get("multipleOf"))


def resolve_ref(ref, defs):
    m = re.match(r"^#/definitions/(.+)$", ref)
    if not m or m.group(1) not in defs:
        raise GeneratorError("unsupported $ref %r" % ref)
    return defs[m.group(1)]


class Model:
    def __init__(self):
        self.by_base = {}      # base name -> list of TypeDef variants (in order)
        self.messages = {}     # (action, "Request"/"Response") -> (fields, schema)

    def register(self, kind, base_name, shape, action, source):
        variants = self.by_base.setdefault(base_name, [])
        for td in variants:
            if td.shape == shape:
                if td.kind != kind:
                    raise GeneratorError("kind clash for %s" % base_name)
                td.add_action(action)
                return td, False
        td = TypeDef(kind, base_name, shape)
        td.add_action(action)
        td.source = source
        variants.append(td)
        return td, True

    def resolve(self, node, prop, owner_base, action, defs, source, def_name=None):
        if "$ref" in node:
            ref = node["$ref"]
            name = ref.split("/")[-1]
            return self.resolve(resolve_ref(ref, defs), prop, owner_base, action,
                                defs, source, def_name=name)
        t = node.get("type")
        if "enum" in node:
            if t != "string":
                raise GeneratorError("%s: non-string enum" % source)
            base = self.enum_name(prop, owner_base, def_name)
            td, new = self.register("enum", base, shape_of(node, defs), action, source)
            if new:
                td.values = list(node["enum"])
            return Named(td)
        if t == "object":
            base = self.struct_name(prop, def_name)
            return Named(self.object_def(node, base, action, defs, source))
        if t == "array":
            return ArrayOf(self.resolve(node["items"], prop, owner_base, action,
                                        defs, source + "/items", def_name=None))
        if t == "string":
            return Prim("Date" if node.get("format") == "date-time" else "String")
        if t == "integer":
            return Prim("Int")
        if t == "number":
            return Prim("Double")
        if t == "boolean":
            return Prim("Bool")
        raise GeneratorError("%s: unsupported schema node %r" % (source, node))

    def object_def(self, node, base, action, defs, source):
        td, new = self.register("struct", base, shape_of(node, defs), action, source)
        fields = self.fields_of(node, base, action, defs, source)
        if new:
            td.fields = fields
        return td

    def fields_of(self, node, owner_base, action, defs, source):
        required = set(node.get("required", []))
        props = node.get("properties", {})
        unknown = required - set(props)
        if unknown:
            raise GeneratorError("%s: required but undefined: %s" % (source, sorted(unknown)))
        fields = []
        for pname, pnode in props.items():
            tref = self.resolve(pnode, pname, owner_base, action, defs,
                                source + "/properties/" + pname)
            fields.append(Field(pname, tref, pname in required, pnode))
        return fields

    @staticmethod
    def enum_name(prop, owner_base, def_name):
        if def_name:
            return definition_type_name(def_name)
        if (owner_base, prop) in ENUM_NAMES:
            return ENUM_NAMES[(owner_base, prop)]
        if prop in ENUM_NAMES_BY_PROPERTY:
            return ENUM_NAMES_BY_PROPERTY[prop]
        stem = re.sub(r"(Request|Response)$", "", owner_base)
        if prop in ("status", "type"):
            return stem + upper_first(prop)
        return upper_first(prop)

    @staticmethod
    def struct_name(prop, def_name):
        if def_name:
            return definition_type_name(def_name)
        return STRUCT_NAMES_BY_PROPERTY.get(prop, upper_first(prop))

    def assign_names(self, reserved):
        """Structurally identical types share a name. When one base name has
        several shapes, the first occurrence (in ACTIONS order) keeps the bare
        name and every other variant is prefixed with the name of the first
        action that uses it."""
        taken = dict((n, "message") for n in reserved)
        for base in self.by_base:
            variants = self.by_base[base]
            for i, td in enumerate(variants):
                td.name = base if i == 0 else td.actions[0] + base
                if td.name in taken:
                    raise GeneratorError("type name clash: %s" % td.name)
                taken[td.name] = td

    def all_types(self):
        for variants in self.by_base.values():
            for td in variants:
                yield td


def definition_type_name(def_name):
    if def_name in DEFINITION_NAMES:
        return DEFINITION_NAMES[def_name]
    for suffix in ("EnumType", "Type"):
        if def_name.endswith(suffix) and len(def_name) > len(suffix):
            return def_name[: -len(suffix)]
    return def_name


# ---------------------------------------------------------------------------
# Swift emission
# ---------------------------------------------------------------------------

def swift_type(tref):
    if isinstance(tref, Prim):
        return tref.swift
    if isinstance(tref, ArrayOf):
        return "[" + swift_type(tref.item) + "]"
    return tref.typedef.name


def constraint_doc(node):
    notes = []
    n = node
    if "minItems" in n:
        notes.append("minItems %d" % n["minItems"])
    if n.get("type") == "array":
        n = n.get("items", {})
    if "maxLength" in n:
        notes.append("maxLength %d" % n["maxLength"])
    if "multipleOf" in n:
        notes.append("multipleOf %s" % n["multipleOf"])
    if n.get("format") and n.get("format") != "date-time":
        notes.append("format %s" % n["format"])
    return notes


def emit_struct(name, fields, conformance, prelude, doc):
    lines = []
    lines.extend("/// " + d for d in doc)
    lines.append("public struct %s: %s {" % (name, conformance))
    for p in prelude:
        lines.append("    " + p)
    if prelude and fields:
        lines.append("")
    for f in fields:
        notes = constraint_doc(f.node)
        if notes:
            lines.append("    /// Schema: %s." % ", ".join(notes))
        opt = "" if f.required else "?"
        lines.append("    public var %s: %s%s" % (swift_ident(f.name), swift_type(f.tref), opt))
    if fields:
        lines.append("")
        params = []
        for f in fields:
            if f.required:
                params.append("%s: %s" % (swift_ident(f.name), swift_type(f.tref)))
            else:
                params.append("%s: %s? = nil" % (swift_ident(f.name), swift_type(f.tref)))
        if len(params) <= 2:
            lines.append("    public init(%s) {" % ", ".join(params))
        else:
            lines.append("    public init(")
            for i, p in enumerate(params):
                lines.append("        " + p + ("," if i < len(params) - 1 else ""))
            lines.append("    ) {")
        for f in fields:
            lines.append("        self.%s = %s" % (f.name, swift_ident(f.name)))
        lines.append("    }")
    else:
        if prelude:
            lines.append("")
        lines.append("    public init() {}")
    lines.append("}")
    return "\n".join(lines)


def emit_enum(td):
    names = []
    used = set()
    for raw in td.values:
        base = lower_camel(raw)
        name = base
        i = 2
        while name in used:
            name = "%s%d" % (base, i)
            i += 1
        used.add(name)
        names.append(name)
    lines = ["/// Schema: %s." % td.source,
             "public enum %s: String, Codable, Sendable, CaseIterable {" % td.name]
    for raw, name in zip(td.values, names):
        lines.append("    case %s = %s" % (swift_ident(name), swift_string_literal(raw)))
    lines.append("}")
    return "\n".join(lines)


def emit_typedef(td):
    if td.kind == "enum":
        out = emit_enum(td)
    else:
        out = emit_struct(td.name, td.fields, "Codable, Sendable, Equatable", [],
                          ["Schema: %s." % td.source])
    for alias in TYPE_ALIASES.get(td.name, []):
        out += "\n\n/// OCPP 1.6 specification name for `%s`.\npublic typealias %s = %s" % (
            td.name, alias, td.name)
    return out


def direction_case(action):
    if action in BOTH_DIRECTIONS:
        return "both"
    if action in CP_TO_CS:
        return "chargePointToCentralSystem"
    return "centralSystemToChargePoint"


DIRECTION_TEXT = {
    "both": "Charge Point <-> Central System",
    "chargePointToCentralSystem": "Charge Point -> Central System",
    "centralSystemToChargePoint": "Central System -> Charge Point",
}


def file_text(parts, imports=("Foundation", "OCPPCore")):
    # The package uses InternalImportsByDefault: a module whose types appear in public API is
    # imported publicly, and Foundation only where a `Date` appears.
    body = "".join(parts)
    uses = {"Foundation": r"\bDate\b", "OCPPCore": r"\bOCPP(Payload|Request)\b"}
    needed = [i for i in imports if re.search(uses.get(i, "."), body)]
    out = HEADER + "\n" + "".join("public import %s\n" % i for i in needed)
    for p in parts:
        out += "\n" + p + "\n"
    return out


def generate(schema_dir):
    """Returns {filename: text}."""
    present = sorted(f[:-5] for f in os.listdir(schema_dir) if f.endswith(".json"))
    expected = sorted(ACTIONS + [a + "Response" for a in ACTIONS])
    if present != expected:
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        raise GeneratorError("schema set mismatch; missing=%s extra=%s" % (missing, extra))

    raw_texts = {}
    model = Model()
    for action in ACTIONS:
        for kind, fname in (("Request", action + ".json"), ("Response", action + "Response.json")):
            path = os.path.join(schema_dir, fname)
            with open(path, "rb") as fh:
                data = fh.read()
            text = data.decode("utf-8")
            raw_texts[(action, kind)] = text
            schema = json.loads(text)
            if schema.get("type") != "object":
                raise GeneratorError("%s: top level is not an object" % fname)
            defs = schema.get("definitions", {})
            fields = model.fields_of(schema, action + kind, action, defs, fname + "#")
            model.messages[(action, kind)] = (fields, schema)

    reserved = [a + k for a in ACTIONS for k in ("Request", "Response")]
    reserved += ["OCPP16Action", "OCPP16Schemas", "OCPP16Coding"]
    model.assign_names(reserved)

    files = {}
    shared = []
    per_action = dict((a, []) for a in ACTIONS)
    for td in sorted(model.all_types(), key=lambda t: t.name):
        if len(td.actions) > 1:
            shared.append(td)
        else:
            per_action[td.actions[0]].append(td)

    for action in ACTIONS:
        direction = direction_case(action)
        req_fields, _ = model.messages[(action, "Request")]
        res_fields, _ = model.messages[(action, "Response")]
        parts = [
            emit_struct(action + "Request", req_fields, "OCPPRequest",
                        ["public typealias Response = %sResponse" % action,
                         "public static let action = %s" % swift_string_literal(action)],
                        ["`%s` request (%s)." % (action, DIRECTION_TEXT[direction]),
                         "Schema: %s.json." % action]),
            emit_struct(action + "Response", res_fields, "OCPPPayload", [],
                        ["`%s` response." % action, "Schema: %sResponse.json." % action]),
        ]
        parts += [emit_typedef(td) for td in per_action[action]]
        files[action + ".swift"] = file_text(parts)

    shared_parts = [
        "// Types used by more than one action (structurally identical in every schema that uses them).",
    ]
    for td in shared:
        shared_parts.append("// Used by: %s\n%s" % (", ".join(td.actions), emit_typedef(td)))
    files["SharedTypes.swift"] = file_text(shared_parts)

    files["Actions.swift"] = file_text([emit_actions()])
    files["Schemas.swift"] = file_text([emit_schemas(raw_texts)], imports=())
    return files, model


def emit_actions():
    lines = [
        "/// All OCPP 1.6J actions (core profile set + Security Whitepaper extensions).",
        "public enum OCPP16Action: String, CaseIterable, Sendable {",
    ]
    for a in ACTIONS:
        lines.append("    case %s = %s" % (swift_ident(lower_camel(a)), swift_string_literal(a)))
    lines += [
        "",
        "    /// Which side initiates the action (sends the CALL).",
        "    public enum Direction: Sendable, Equatable, CaseIterable {",
        "        case chargePointToCentralSystem",
        "        case centralSystemToChargePoint",
        "        /// DataTransfer may be initiated by either side.",
        "        case both",
        "    }",
        "",
        "    public var direction: Direction {",
        "        switch self {",
    ]
    for d in ("chargePointToCentralSystem", "centralSystemToChargePoint", "both"):
        cases = [a for a in ACTIONS if direction_case(a) == d]
        lines.append("        case %s:" % ", ".join("." + lower_camel(a) for a in cases))
        lines.append("            .%s" % d)
    lines += [
        "        }",
        "    }",
        "",
        "    /// `true` for the actions added by the OCPP 1.6 Security Whitepaper.",
        "    public var isSecurityExtension: Bool {",
        "        switch self {",
        "        case %s:" % ", ".join("." + lower_camel(a) for a in SECURITY_ACTIONS),
        "            true",
        "        default:",
        "            false",
        "        }",
        "    }",
        "",
        "    public var requestType: any OCPPRequest.Type {",
        "        switch self {",
    ]
    for a in ACTIONS:
        lines.append("        case .%s: %sRequest.self" % (lower_camel(a), a))
    lines += [
        "        }",
        "    }",
        "",
        "    public var responseType: any OCPPPayload.Type {",
        "        switch self {",
    ]
    for a in ACTIONS:
        lines.append("        case .%s: %sResponse.self" % (lower_camel(a), a))
    lines += ["        }", "    }", "}"]
    return "\n".join(lines)


def emit_schemas(raw_texts):
    lines = [
        "/// The exact JSON schema texts the types were generated from.",
        "public enum OCPP16Schemas {",
        "    public static func request(for action: String) -> String? {",
        "        switch action {",
    ]
    for a in ACTIONS:
        lines.append("        case %s: %sRequest" % (swift_string_literal(a), lower_camel(a)))
    lines += ["        default: nil", "        }", "    }", "",
              "    public static func response(for action: String) -> String? {",
              "        switch action {"]
    for a in ACTIONS:
        lines.append("        case %s: %sResponse" % (swift_string_literal(a), lower_camel(a)))
    lines += ["        default: nil", "        }", "    }", ""]
    for a in ACTIONS:
        for kind, suffix in (("Request", ""), ("Response", "Response")):
            lines.append("    // %s%s.json" % (a, suffix))
            lines.append("    static let %s%s = " % (lower_camel(a), kind)
                         + swift_raw_multiline(raw_texts[(a, kind)]))
            lines.append("")
    lines[-1] = "}"
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description="Generate OCPP 1.6J Swift types from JSON schemas.")
    ap.add_argument("schema_dir", nargs="?", default=os.path.join(root, "ocpp-schemas", "v16"))
    ap.add_argument("output_dir", nargs="?",
                    default=os.path.join(root, "Sources", "OCPP16", "Generated"))
    ap.add_argument("--check", action="store_true",
                    help="exit non-zero if generated files are out of date")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.schema_dir):
        print("generate-ocpp16: error: schema directory not found: %s" % args.schema_dir,
              file=sys.stderr)
        return 2
    try:
        files, _ = generate(args.schema_dir)
    except (GeneratorError, ValueError, OSError) as e:
        print("generate-ocpp16: error: %s" % e, file=sys.stderr)
        return 2

    existing = set()
    if os.path.isdir(args.output_dir):
        existing = set(f for f in os.listdir(args.output_dir) if f.endswith(".swift"))
    stale = sorted(existing - set(files))

    if args.check:
        problems = []
        for name in sorted(files):
            path = os.path.join(args.output_dir, name)
            if not os.path.exists(path):
                problems.append("missing: " + name)
                continue
            with open(path, "rb") as fh:
                if fh.read() != files[name].encode("utf-8"):
                    problems.append("differs: " + name)
        problems += ["stale: " + s for s in stale]
        if problems:
            print("generate-ocpp16: generated sources are out of date "
                  "(run python3 Scripts/generate-ocpp16.py):", file=sys.stderr)
            for p in problems:
                print("  " + p, file=sys.stderr)
            return 1
        print("generate-ocpp16: %d generated files up to date" % len(files))
        return 0

    os.makedirs(args.output_dir, exist_ok=True)
    written = 0
    for name in sorted(files):
        path = os.path.join(args.output_dir, name)
        data = files[name].encode("utf-8")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                if fh.read() == data:
                    continue
        with open(path, "wb") as fh:
            fh.write(data)
        written += 1
    for s in stale:
        os.remove(os.path.join(args.output_dir, s))
    print("generate-ocpp16: %d files (%d written, %d stale removed) in %s"
          % (len(files), written, len(stale), args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
