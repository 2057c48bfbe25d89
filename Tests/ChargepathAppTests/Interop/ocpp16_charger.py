#!/usr/bin/env python3
"""A scripted OCPP 1.6J charge point on the independent `ocpp` library (mobilityhouse, 2.1.0).

The interop tests (InteropTests.swift) run it against a real Chargepath node:

    ocpp16_charger.py --url ws://127.0.0.1:PORT/ocpp --id CP-1 --scenario full-session \
        --authorize TAG-A --authorize TAG-B --start-tag TAG-A

It connects to URL/ID with subprotocol ocpp1.6 and plays one scenario:

- full-session: BootNotification, Heartbeat, StatusNotification (connectors 0, 1, and 2
  faulted), Authorize for every --authorize tag, StartTransaction (--start-tag, connector 1),
  MeterValues, StopTransaction (with transactionData), StatusNotification back to Available,
  DataTransfer.
- tags: BootNotification, then for every --authorize tag: Authorize, StartTransaction and
  StopTransaction (with that idTag) on connector 1.
- boot: BootNotification only.
- answer-calls: BootNotification and StatusNotification, then stays connected answering the
  central system's calls until it gets ChangeConfiguration with key "Chargepath.Exit" (or
  --timeout passes). Some answers trigger follow-up messages, as a charger would send them:
  RemoteStartTransaction -> StartTransaction, RemoteStopTransaction -> StopTransaction,
  TriggerMessage -> the requested message, ChangeAvailability -> StatusNotification.
  CancelReservation has deliberately no handler: the library answers it with a CALLERROR
  (NotImplemented). DataTransfer with vendorId com.example.interop and messageId "Sleep" answers
  after `data` seconds (a slow charger, for timeouts).

In every scenario it answers central-system calls the same way. The library validates every
response of the central system (and every call it sends) against the official 1.6 schemas.

Output: ONE JSON document on stdout:
    {"scenario", "chargePointId", "url", "ocppVersion", "subprotocol", "exitReason",
     "steps": [{"name", "action", "uniqueId", "request", "response"?, "callError"?, "error"?}],
     "centralSystemCalls": [{"action", "uniqueId", "payload", "answer": {...}}],
     "frames": [{"direction": "sent"|"received", "at", "message"}], "configuration": {...}}
A step's "error" is set when the call failed (a CALLERROR, a response the library rejected as
schema-invalid, a timeout); the session goes on after such an error.
Exit status 0 when the scenario ran to its end; non-zero, with the reason on stderr, when it
could not (no connection, overall timeout, ...). The JSON document is printed in both cases.
Everything is bounded by timeouts (--timeout overall, --call-timeout per call), so a broken
server never hangs the caller.
"""

import argparse
import asyncio
import json
import logging
import sys
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

INSTALL_HINT = "run .ci/run, or: python3 -m pip install 'ocpp==2.1.0' websockets"

try:
    import websockets
    from ocpp.exceptions import OCPPError
    from ocpp.routing import after, on
    from ocpp.v16 import ChargePoint as BaseChargePoint
    from ocpp.v16 import call, call_result
    from ocpp.v16.enums import Action
except ImportError as error:  # pragma: no cover - depends on the machine
    print(f"ocpp16_charger.py: cannot import the OCPP library ({error}); {INSTALL_HINT}", file=sys.stderr)
    sys.exit(3)

try:
    from importlib.metadata import version as _package_version

    OCPP_LIBRARY_VERSION = _package_version("ocpp")
except Exception:  # pragma: no cover
    OCPP_LIBRARY_VERSION = "unknown"

VENDOR_ID = "com.example.interop"
EXIT_KEY = "Chargepath.Exit"


def now(offset_seconds=0.0):
    """UTC, ISO 8601 with milliseconds and Z."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=offset_seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_frame(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


class Recorder:
    """Everything that crossed the socket, and the outcome of each call the charger made."""

    def __init__(self):
        self.frames = []
        self.steps = []
        self.started = time.monotonic()

    def frame(self, direction, text):
        self.frames.append(
            {"direction": direction, "at": round(time.monotonic() - self.started, 3), "message": parse_frame(text)}
        )

    def find(self, direction, message_types, unique_id):
        for entry in self.frames:
            message = entry["message"]
            if (
                entry["direction"] == direction
                and isinstance(message, list)
                and len(message) >= 3
                and message[0] in message_types
                and message[1] == unique_id
            ):
                return message
        return None

    def central_system_calls(self):
        """Each CALL the central system sent, with what the charger answered."""
        calls = []
        for entry in self.frames:
            message = entry["message"]
            if entry["direction"] != "received" or not isinstance(message, list) or len(message) < 4 or message[0] != 2:
                continue
            answer = self.find("sent", (3, 4), message[1])
            if answer is None:
                described = None
            elif answer[0] == 3:
                described = {"type": "CallResult", "payload": answer[2]}
            else:
                described = {
                    "type": "CallError",
                    "errorCode": answer[2],
                    "errorDescription": answer[3] if len(answer) > 3 else None,
                    "errorDetails": answer[4] if len(answer) > 4 else None,
                }
            calls.append({"action": message[2], "uniqueId": message[1], "payload": message[3], "answer": described})
        return calls


class Charger(BaseChargePoint):
    """A two-connector charge point that records everything and answers the central system."""

    def __init__(self, identity, connection, recorder, call_timeout):
        super().__init__(identity, connection, response_timeout=call_timeout)
        self.recorder = recorder
        self.exit_requested = asyncio.Event()
        self.background = set()
        self.active = {}  # connector id -> transaction id
        self.meter = 10_000
        self.configuration = {
            # key: [value, readonly]
            "HeartbeatInterval": ["300", False],
            "MeterValueSampleInterval": ["60", False],
            "MeterValuesSampledData": ["Energy.Active.Import.Register", False],
            "AuthorizeRemoteTxRequests": ["false", False],
            "NumberOfConnectors": ["2", True],
            "SupportedFeatureProfiles": ["Core,RemoteTrigger", True],
        }

    # -- recording ---------------------------------------------------------------------------

    async def route_message(self, raw_msg):
        self.recorder.frame("received", raw_msg)
        await super().route_message(raw_msg)

    async def _send(self, message):
        self.recorder.frame("sent", message)
        await super()._send(message)

    async def step(self, name, payload):
        """Sends one call; records request, raw response and any error. Returns the raw response payload or None."""
        unique_id = str(uuid.uuid4())
        entry = {"name": name, "action": type(payload).__name__, "uniqueId": unique_id}
        self.recorder.steps.append(entry)
        try:
            await self.call(payload, suppress=False, unique_id=unique_id)
        except OCPPError as error:
            entry["error"] = {"type": type(error).__name__, "code": getattr(error, "code", None),
                              "description": error.description, "details": str(error.details)}
        except asyncio.TimeoutError as error:
            entry["error"] = {"type": "Timeout", "description": str(error)}
        except Exception as error:  # noqa: BLE001 - a broken answer must be reported, not crash the session
            entry["error"] = {"type": type(error).__name__, "description": str(error)}
        sent = self.recorder.find("sent", (2,), unique_id)
        if sent is not None:
            entry["request"] = sent[3]
        answer = self.recorder.find("received", (3, 4), unique_id)
        if answer is not None and answer[0] == 3:
            entry["response"] = answer[2]
        elif answer is not None:
            entry["callError"] = {"errorCode": answer[2], "errorDescription": answer[3] if len(answer) > 3 else None,
                                  "errorDetails": answer[4] if len(answer) > 4 else None}
        return entry.get("response") if "error" not in entry else None

    def spawn(self, coroutine):
        """Runs a follow-up message after an answer was sent (the library's receive loop must not wait for it)."""
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def settle(self, timeout):
        if self.background:
            await asyncio.wait(set(self.background), timeout=timeout)

    # -- charger-initiated messages -----------------------------------------------------------

    async def boot(self):
        return await self.step("BootNotification", call.BootNotification(
            charge_point_vendor="PyInterop",
            charge_point_model="PyCharger-16",
            charge_point_serial_number="PY-SN-0001",
            charge_box_serial_number="PY-BOX-0001",
            firmware_version="py-ocpp-" + OCPP_LIBRARY_VERSION,
            iccid="89310000000000000017",
            imsi="262010000000001",
            meter_type="PyMeter 3000",
            meter_serial_number="PY-MTR-0001",
        ))

    async def status(self, name, connector_id, status, error_code="NoError", **extra):
        return await self.step(name, call.StatusNotification(
            connector_id=connector_id, error_code=error_code, status=status, timestamp=now(), **extra
        ))

    async def start_transaction(self, name, connector_id, id_tag, meter_start):
        response = await self.step(name, call.StartTransaction(
            connector_id=connector_id, id_tag=id_tag, meter_start=meter_start, timestamp=now()
        ))
        transaction_id = response.get("transactionId") if response else None
        if isinstance(transaction_id, int):
            self.active[connector_id] = transaction_id
        return response

    async def stop_transaction(self, name, connector_id, transaction_id, meter_stop, reason, id_tag=None, with_data=False):
        data = None
        if with_data:
            data = [{"timestamp": now(), "sampledValue": [{
                "value": str(meter_stop), "context": "Transaction.End", "format": "Raw",
                "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh",
            }]}]
        response = await self.step(name, call.StopTransaction(
            meter_stop=meter_stop, timestamp=now(), transaction_id=transaction_id if transaction_id is not None else 0,
            reason=reason, id_tag=id_tag, transaction_data=data,
        ))
        self.active.pop(connector_id, None)
        return response

    # -- central-system calls -----------------------------------------------------------------

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value, **kwargs):
        if key == EXIT_KEY:
            return call_result.ChangeConfiguration(status="Accepted")
        if key not in self.configuration:
            return call_result.ChangeConfiguration(status="NotSupported")
        if self.configuration[key][1]:
            return call_result.ChangeConfiguration(status="Rejected")
        self.configuration[key][0] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @after(Action.change_configuration)
    def after_change_configuration(self, key, value, **kwargs):
        if key == EXIT_KEY:
            self.exit_requested.set()

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **kwargs):
        wanted = list(self.configuration) if not key else key
        known = [{"key": k, "readonly": self.configuration[k][1], "value": self.configuration[k][0]}
                 for k in wanted if k in self.configuration]
        unknown = [k for k in wanted if k not in self.configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag, connector_id=None, **kwargs):
        connector = connector_id or 1
        status = "Rejected" if connector in self.active or connector not in (1, 2) else "Accepted"
        return call_result.RemoteStartTransaction(status=status)

    @after(Action.remote_start_transaction)
    def after_remote_start_transaction(self, id_tag, connector_id=None, **kwargs):
        connector = connector_id or 1
        if connector in self.active or connector not in (1, 2):
            return

        async def follow_up():
            await self.status(f"RemoteStart:StatusNotification:{connector}:Preparing", connector, "Preparing")
            await self.start_transaction("RemoteStart:StartTransaction", connector, id_tag, self.meter)
            await self.status(f"RemoteStart:StatusNotification:{connector}:Charging", connector, "Charging")

        self.spawn(follow_up())

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id, **kwargs):
        status = "Accepted" if transaction_id in self.active.values() else "Rejected"
        return call_result.RemoteStopTransaction(status=status)

    @after(Action.remote_stop_transaction)
    def after_remote_stop_transaction(self, transaction_id, **kwargs):
        connectors = [c for c, t in self.active.items() if t == transaction_id]
        if not connectors:
            return
        connector = connectors[0]
        self.active.pop(connector, None)
        self.meter += 1234

        async def follow_up():
            await self.stop_transaction("RemoteStop:StopTransaction", connector, transaction_id, self.meter, "Remote")
            await self.status(f"RemoteStop:StatusNotification:{connector}:Available", connector, "Available")

        self.spawn(follow_up())

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message, connector_id=None, **kwargs):
        supported = {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                     "DiagnosticsStatusNotification", "FirmwareStatusNotification"}
        return call_result.TriggerMessage(status="Accepted" if requested_message in supported else "NotImplemented")

    @after(Action.trigger_message)
    def after_trigger_message(self, requested_message, connector_id=None, **kwargs):
        name = f"Triggered:{requested_message}"
        connector = connector_id if connector_id is not None else 1
        if requested_message == "BootNotification":
            self.spawn(self.boot())
        elif requested_message == "Heartbeat":
            self.spawn(self.step(name, call.Heartbeat()))
        elif requested_message == "StatusNotification":
            status = "Charging" if connector in self.active else "Available"
            self.spawn(self.status(name, connector, status))
        elif requested_message == "MeterValues":
            self.spawn(self.step(name, call.MeterValues(
                connector_id=connector, transaction_id=self.active.get(connector),
                meter_value=[{"timestamp": now(), "sampledValue": [
                    {"value": str(self.meter), "context": "Trigger", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
                ]}],
            )))
        elif requested_message == "DiagnosticsStatusNotification":
            self.spawn(self.step(name, call.DiagnosticsStatusNotification(status="Idle")))
        elif requested_message == "FirmwareStatusNotification":
            self.spawn(self.step(name, call.FirmwareStatusNotification(status="Idle")))

    @on(Action.reset)
    def on_reset(self, type, **kwargs):  # noqa: A002 - the payload's name
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type, **kwargs):  # noqa: A002
        return call_result.ChangeAvailability(status="Accepted")

    @after(Action.change_availability)
    def after_change_availability(self, connector_id, type, **kwargs):  # noqa: A002
        status = "Unavailable" if type == "Inoperative" else "Available"
        self.spawn(self.status(f"ChangeAvailability:StatusNotification:{connector_id}", connector_id, status))

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id, **kwargs):
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.clear_cache)
    def on_clear_cache(self, **kwargs):
        return call_result.ClearCache(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        return call_result.GetLocalListVersion(list_version=0)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id, message_id=None, data=None, **kwargs):
        if vendor_id != VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        if message_id == "Sleep":
            # A slow charger: answers after `data` seconds (and reads nothing meanwhile).
            await asyncio.sleep(float(data or "1"))
        return call_result.DataTransfer(status="Accepted", data=data)

    # CancelReservation: no handler on purpose (the library answers CALLERROR NotImplemented).


# -- scenarios ---------------------------------------------------------------------------------

async def full_session(charger, options):
    await charger.boot()
    await charger.step("Heartbeat", call.Heartbeat())
    await charger.status("StatusNotification:0:Available", 0, "Available")
    await charger.status("StatusNotification:1:Available", 1, "Available")
    await charger.status("StatusNotification:2:Faulted", 2, "Faulted", error_code="GroundFailure",
                         info="ground fault test", vendor_id=VENDOR_ID, vendor_error_code="GF-42")
    for tag in options.authorize:
        await charger.step(f"Authorize:{tag}", call.Authorize(id_tag=tag))

    start_tag = options.start_tag or (options.authorize[0] if options.authorize else "PY-TAG")
    await charger.status("StatusNotification:1:Preparing", 1, "Preparing")
    started = await charger.start_transaction("StartTransaction", 1, start_tag, 1000)
    transaction_id = started.get("transactionId") if started else None
    await charger.status("StatusNotification:1:Charging", 1, "Charging")
    await charger.step("MeterValues", call.MeterValues(
        connector_id=1, transaction_id=transaction_id,
        meter_value=[{"timestamp": now(), "sampledValue": [
            {"value": "1500", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": "7200.5", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "230.1", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
        ]}],
    ))
    await charger.stop_transaction("StopTransaction", 1, transaction_id, 2500, "Local", id_tag=start_tag, with_data=True)
    await charger.status("StatusNotification:1:Finishing", 1, "Finishing")
    await charger.status("StatusNotification:1:Available:again", 1, "Available")
    # Quotes, non-ASCII and a character outside the BMP (json.dumps sends \u escapes and a surrogate pair).
    await charger.step("DataTransfer", call.DataTransfer(vendor_id=VENDOR_ID, message_id="Ping",
                                                         data='{"hello":"world","text":"Grüße \U0001F50C"}'))
    return "completed"


async def tags(charger, options):
    await charger.boot()
    for index, tag in enumerate(options.authorize):
        await charger.step(f"Authorize:{tag}", call.Authorize(id_tag=tag))
        started = await charger.start_transaction(f"StartTransaction:{tag}", 1, tag, 100 * index)
        transaction_id = started.get("transactionId") if started else None
        await charger.stop_transaction(f"StopTransaction:{tag}", 1, transaction_id, 100 * index + 50, "Local", id_tag=tag)
    return "completed"


async def boot(charger, options):
    await charger.boot()
    return "completed"


async def answer_calls(charger, options):
    await charger.boot()
    await charger.status("StatusNotification:1:Available", 1, "Available")
    await charger.status("StatusNotification:2:Available", 2, "Available")
    await charger.exit_requested.wait()
    return "exit-key"


SCENARIOS = {"full-session": full_session, "tags": tags, "boot": boot, "answer-calls": answer_calls}


# -- main --------------------------------------------------------------------------------------

async def run(options, recorder, outcome):
    url = options.url.rstrip("/") + "/" + quote(options.id, safe="")
    outcome["url"] = url
    connect_options = dict(subprotocols=["ocpp1.6"], open_timeout=options.call_timeout, close_timeout=2,
                           compression=None, ping_interval=None)
    try:
        connection = await websockets.connect(url, proxy=None, **connect_options)
    except TypeError:  # websockets < 15 has no proxy option
        connection = await websockets.connect(url, **connect_options)
    outcome["subprotocol"] = connection.subprotocol
    charger = Charger(options.id, connection, recorder, options.call_timeout)
    outcome["charger"] = charger
    receiver = asyncio.ensure_future(charger.start())
    scenario = asyncio.ensure_future(SCENARIOS[options.scenario](charger, options))
    try:
        done, _ = await asyncio.wait({receiver, scenario}, return_when=asyncio.FIRST_COMPLETED)
        if scenario not in done:
            error = receiver.exception() if not receiver.cancelled() else None
            raise RuntimeError(f"the connection ended before the scenario did: {error!r}")
        outcome["exitReason"] = scenario.result()
        # Follow-up messages still under way, and the last answer's frame, get a moment to finish.
        await charger.settle(options.call_timeout)
        await asyncio.sleep(0.2)
    finally:
        scenario.cancel()
        try:
            await asyncio.wait_for(connection.close(), 3)
        except Exception:  # noqa: BLE001
            pass
        receiver.cancel()
        await asyncio.gather(receiver, scenario, return_exceptions=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the central system's URL; the identity is appended as the last path segment")
    parser.add_argument("--id", required=True, help="the charge point identity")
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--authorize", action="append", default=[], help="an idTag to authorize (repeatable)")
    parser.add_argument("--start-tag", help="the idTag that starts the full session's transaction")
    parser.add_argument("--timeout", type=float, default=60, help="overall limit in seconds")
    parser.add_argument("--call-timeout", type=float, default=10, help="limit for each answer, in seconds")
    parser.add_argument("--verbose", action="store_true", help="log the library's messages on stderr")
    options = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if options.verbose else logging.WARNING)
    if not options.verbose:
        # The library logs every CALLERROR it sends or gets with a traceback; the JSON has them.
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)

    recorder = Recorder()
    outcome = {"exitReason": None}
    failure = None
    try:
        asyncio.run(asyncio.wait_for(run(options, recorder, outcome), options.timeout))
    except asyncio.TimeoutError:
        failure = f"the scenario did not finish within {options.timeout:g} s"
        if options.scenario == "answer-calls":
            failure += f" (no ChangeConfiguration {EXIT_KEY} came)"
        outcome["exitReason"] = "timeout"
    except Exception as error:  # noqa: BLE001
        failure = f"{type(error).__name__}: {error}"
        outcome["exitReason"] = "error"
        if options.verbose:
            traceback.print_exc()

    charger = outcome.get("charger")
    document = {
        "scenario": options.scenario,
        "chargePointId": options.id,
        "url": outcome.get("url"),
        "ocppVersion": OCPP_LIBRARY_VERSION,
        "subprotocol": outcome.get("subprotocol"),
        "exitReason": outcome["exitReason"],
        "failure": failure,
        "steps": recorder.steps,
        "centralSystemCalls": recorder.central_system_calls(),
        "configuration": {k: v[0] for k, v in charger.configuration.items()} if charger else {},
        "frames": recorder.frames,
    }
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()
    if failure:
        print(f"ocpp16_charger.py ({options.scenario}, {options.id}): {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
