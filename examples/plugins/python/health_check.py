"""A runner plugin in Python: an HTTP health check through `wasi:http`.

GETs `url` and reports the status and the latency as outputs; fails when the
status is not the expected one or the answer is slower than `max_latency_ms`.
The request goes through the runner's `http` capability: a URL outside the
playbook's `grants.http` is refused by the runner, and the step fails as
`denied` with a message naming the grant to add.

Built with componentize-py against the world in `wit/world.wit`, which is the
runner's contract (`runner:plugin@0.1.0`) plus `wasi:http/outgoing-handler`
(see `examples/plugins/build.sh`).
"""

import json
import time
from urllib.parse import urlsplit

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, outgoing_handler, streams
from wit_world.imports.runner_plugin_types import (
    PluginInfo,
    StepError_Failed,
    StepError_InvalidInput,
    StepError_Retryable,
    StepOutput,
)
from wit_world.imports.wasi_http_types import (
    ErrorCode_ConnectionRefused,
    ErrorCode_ConnectionTimeout,
    ErrorCode_DestinationUnavailable,
    ErrorCode_DnsTimeout,
    Fields,
    Method_Get,
    OutgoingRequest,
    RequestOptions,
    Scheme_Http,
    Scheme_Https,
)

VERSION = "0.1.0"

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "pattern": "^https?://", "description": "What to GET."},
        "expect_status": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "minItems": 1,
            "description": "Statuses that pass (default: any 2xx).",
        },
        "max_latency_ms": {
            "type": "integer",
            "minimum": 1,
            "description": "Slower answers fail the check.",
        },
        "timeout_ms": {
            "type": "integer",
            "minimum": 1,
            "default": 5000,
            "description": "Give up on the request after this long.",
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}

# The most of a body read and kept for the `body` output.
MAX_BODY = 4096
# Connection errors that may pass on a later attempt (a step's `retry:`).
TRANSIENT = (
    ErrorCode_ConnectionRefused,
    ErrorCode_ConnectionTimeout,
    ErrorCode_DestinationUnavailable,
    ErrorCode_DnsTimeout,
)


class CheckFailed(Exception):
    """The service answered, but not as expected: the step fails."""


class Transient(Exception):
    """The request did not get through; a retry may help."""


class BadInput(Exception):
    """The step's `with:` is wrong; retrying cannot help."""


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="py-health-check",
            version=VERSION,
            description="HTTP health check (Python, componentize-py)",
            input_schema=json.dumps(INPUT_SCHEMA),
            capabilities=["http"],
        )

    def run(self, input: str) -> StepOutput:
        # Every exception becomes the step's error: the runner shows its message.
        # Only `Err(step-error)` crosses the boundary; anything else would trap.
        try:
            return check(json.loads(input))
        except CheckFailed as e:
            raise Err(StepError_Failed(str(e)))
        except Transient as e:
            raise Err(StepError_Retryable(str(e)))
        except BadInput as e:
            raise Err(StepError_InvalidInput(str(e)))
        except Err:
            raise
        except Exception as e:
            raise Err(StepError_Failed(f"{type(e).__name__}: {e}"))


def check(args: dict) -> StepOutput:
    url = args["url"]
    parts = urlsplit(url)
    if not parts.netloc:
        raise BadInput(f"`{url}` has no host")
    log.log(log.Level.INFO, f"GET {url}", "")
    start = time.monotonic()
    status, body = get(parts, args.get("timeout_ms", 5000))
    latency_ms = round((time.monotonic() - start) * 1000, 1)
    outputs = {
        "status": status,
        "latency_ms": latency_ms,
        "body": body.decode("utf-8", "replace"),
    }
    expected = args.get("expect_status")
    if expected is None and not 200 <= status <= 299:
        raise CheckFailed(f"status {status}, expected 2xx")
    if expected is not None and status not in expected:
        raise CheckFailed(f"status {status}, expected {expected}")
    bound = args.get("max_latency_ms")
    if bound is not None and latency_ms > bound:
        raise CheckFailed(f"answered in {latency_ms} ms, over the {bound} ms bound")
    return StepOutput(
        outputs=json.dumps(outputs),
        summary=f"GET {url}: {status} in {latency_ms} ms",
        artifacts=[],
    )


def get(parts, timeout_ms: int) -> tuple[int, bytes]:
    """Status and body of a GET, through `wasi:http` (blocking)."""
    request = OutgoingRequest(Fields.from_list([("user-agent", b"runner-py-health-check")]))
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    options = RequestOptions()
    nanos = timeout_ms * 1_000_000
    options.set_connect_timeout(nanos)
    options.set_first_byte_timeout(nanos)
    options.set_between_bytes_timeout(nanos)
    try:
        future = outgoing_handler.handle(request, options)
    except Err as e:
        raise request_error(e.value)
    # Resources are released child first (the host refuses to drop a parent
    # whose children are alive), hence the nested `with` blocks.
    with future:
        with future.subscribe() as ready:
            ready.block()
        # Ok(Ok(response)), Ok(Err(error-code)), or Err(()) if taken twice.
        answer = future.get()
        if answer is None or isinstance(answer, Err):
            raise CheckFailed("no response")
        if isinstance(answer.value, Err):
            raise request_error(answer.value.value)
        with answer.value.value as response:
            status = response.status()
            with response.consume() as body:
                with body.stream() as stream:
                    return status, read_all(stream)


def read_all(stream) -> bytes:
    """The body up to `MAX_BODY` bytes; the rest is not read."""
    chunks, size = [], 0
    while size < MAX_BODY:
        try:
            chunk = stream.blocking_read(MAX_BODY - size)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise Transient(f"reading the body failed: {e.value}")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def request_error(code) -> Exception:
    name = type(code).__name__.removeprefix("ErrorCode_")
    text = f"request failed: {name}"
    if getattr(code, "value", None) is not None:
        text += f" ({code.value})"
    return Transient(text) if isinstance(code, TRANSIENT) else CheckFailed(text)
