"""Shoal's managed Python runtime loop.

Shoal runs this file as ``python3 -u $LAMBDA_RUNTIME_DIR/bootstrap.py`` inside a
function's execution environment. It speaks the Lambda Runtime API found at
AWS_LAMBDA_RUNTIME_API, loads the handler named by _HANDLER from LAMBDA_TASK_ROOT,
and behaves like AWS Lambda's Python runtime (awslambdaric): same context object,
same error bodies and errorType values, same log line formats.

Standard library only; Python 3.8+.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback

_THIS_FILE = os.path.abspath(__file__)
_THIS_FILES = (__file__, _THIS_FILE)
_API = "/2018-06-01/runtime"
_NEXT = _API + "/invocation/next"
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# Lambda's StandardLogSink writes an error as ONE stdout line: the lines of the
# message are joined with "\r" and leading spaces become NO-BREAK SPACEs.
_ERROR_LOG_LINE_TERMINATE = "\r"
_ERROR_LOG_INDENT = "\u00a0"

_request_id = ""  # the invocation in progress, for log records


class _Fault(Exception):
    """An error the runtime itself reports with a Runtime.* errorType."""

    def __init__(self, error_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


# ---------------------------------------------------------------- Runtime API


class _RuntimeApi(object):
    """One keep-alive HTTP/1.1 connection for the whole life of the process."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        if not host:  # "host" alone
            host, port = address, "80"
        self.conn = http.client.HTTPConnection(host, int(port))  # no timeout

    def call(self, method, path, body=None, headers=None):
        conn = self.conn
        for attempt in (0, 1):
            try:
                if body is None:
                    conn.request(method, path)
                else:
                    conn.request(method, path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp, data
            except (http.client.HTTPException, ConnectionError) as e:
                # The server may have dropped the idle keep-alive connection:
                # reconnect once, then give up.
                conn.close()
                if attempt:
                    raise e

    def next(self):
        resp, body = self.call("GET", _NEXT)
        if resp.status != 200:
            raise RuntimeError(
                "Runtime API %s returned %d: %r" % (_NEXT, resp.status, body[:300])
            )
        # One pass over the headers; lookups below use lower-case names.
        return {k.lower(): v for k, v in resp.getheaders()}, body

    def post(self, path, body, headers):
        resp, data = self.call("POST", path, body, headers)
        if resp.status != 202:
            _write_stdout(
                "[WARNING]\tRuntime API %s returned %d: %s\n"
                % (path, resp.status, data[:300].decode("utf-8", "replace"))
            )


# ---------------------------------------------------------------- JSON


def _json_default(obj):
    # DynamoDB/boto3 hand out Decimals; Lambda's runtime writes them as numbers.
    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj == obj.to_integral_value() and obj.as_tuple().exponent >= 0:
            return int(obj)
        return float(obj)
    raise TypeError(
        "Object of type %s is not JSON serializable" % obj.__class__.__name__
    )


# Same separators as Lambda's Python runtime (", " and ": "), no ASCII escaping.
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=True, default=_json_default
).encode


# ---------------------------------------------------------------- context


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __repr__(self):
        return "Client([%s])" % ",".join(
            "%s=%s" % (k, getattr(self, k)) for k in self.__slots__
        )


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return "ClientContext([custom=%s,env=%s,client=%s])" % (
            self.custom,
            self.env,
            self.client,
        )


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    get = d.get if isinstance(d, dict) else (lambda k, default=None: default)
    for field in cls.__slots__:
        setattr(obj, field, get(field, None))
    return obj


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise _Fault(
            "Runtime.LambdaContextUnmarshalError",
            "Unable to parse %s JSON: %s" % (name, e),
        )


_env = os.environ


class LambdaContext(object):
    def __init__(self, request_id, headers):
        self.aws_request_id = request_id
        self.log_group_name = _env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = _env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = _env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = _env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = _env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        deadline = headers.get("lambda-runtime-deadline-ms")
        try:
            self._deadline_ms = int(deadline)
        except (TypeError, ValueError):
            self._deadline_ms = 0

        client_context = headers.get("lambda-runtime-client-context")
        if client_context:
            cc = _parse_json_header(client_context, "Client Context")
            self.client_context = _obj_from_dict(ClientContext, cc)
            if self.client_context is not None:
                self.client_context.client = _obj_from_dict(
                    Client, self.client_context.client
                )
        else:
            self.client_context = None

        self.identity = _obj_from_dict(CognitoIdentity, {})
        cognito = headers.get("lambda-runtime-cognito-identity")
        if cognito:
            ci = _parse_json_header(cognito, "Cognito Identity")
            if isinstance(ci, dict):
                self.identity.cognito_identity_id = ci.get("cognitoIdentityId")
                self.identity.cognito_identity_pool_id = ci.get("cognitoIdentityPoolId")

    def get_remaining_time_in_millis(self):
        delta = self._deadline_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def log(self, msg):
        _write_stdout(str(msg))

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


# ---------------------------------------------------------------- logging


def _write_stdout(msg):
    sys.stdout.write(msg)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class _LambdaLoggerHandler(logging.Handler):
    def emit(self, record):
        try:
            _write_stdout(self.format(record))
        except Exception:
            self.handleError(record)


class _LambdaLoggerFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _request_id
        return True


def _setup_logging():
    # Like Lambda: "[INFO]\t2024-01-01T00:00:00.123Z\t<request id>\tmessage".
    # The root logger stays at WARNING unless AWS_LAMBDA_LOG_LEVEL says otherwise.
    logging.Formatter.converter = time.gmtime
    handler = _LambdaLoggerHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_LambdaLoggerFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = (_env.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    if level == "TRACE":
        level = "DEBUG"
    if level in ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL"):
        root.setLevel(level)


def _indent(line):
    n = len(line) - len(line.lstrip(" "))
    return _ERROR_LOG_INDENT * n + line[n:]


def _log_error(error):
    # "[ERROR] ValueError: boom\rTraceback (most recent call last):\r  File ..."
    head = "[ERROR]"
    if error["errorType"]:
        head += " " + error["errorType"]
    if error["errorMessage"]:
        if error["errorType"]:
            head += ":"
        head += " " + error["errorMessage"]
    lines = [head, "Traceback (most recent call last):"]
    for element in error["stackTrace"]:
        if element == "":
            lines.append("")
        else:
            lines.extend(_indent(l) for l in element.splitlines())
    _write_stdout(_ERROR_LOG_LINE_TERMINATE.join(lines) + "\n")


# ---------------------------------------------------------------- errors


def _header_safe(value):
    # errorType comes from user code (a class name): keep it a valid header value.
    return "".join(c for c in value if " " <= c <= "~")


def _make_error(message, error_type, stack_trace, request_id=""):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def _user_frames(tb):
    """The traceback's frames without the runtime's own (and importlib's) frames."""
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    i = 0
    while i < len(frames):
        fn = frames[i][0]
        if fn in _THIS_FILES or fn.startswith("<frozen importlib") or (
            os.sep + "importlib" + os.sep in fn
        ):
            i += 1
        else:
            break
    return traceback.format_list(frames[i:])


def _exception_error(request_id=""):
    etype, value, tb = sys.exc_info()
    return _make_error(str(value), etype.__name__, _user_frames(tb), request_id)


# ---------------------------------------------------------------- handler


def _load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise _Fault(
            "Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e)
        )
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise _Fault(
                "Runtime.BuiltInModuleConflict",
                "Cannot use built-in module %s as a handler module" % modname,
            )
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise _Fault(
            "Runtime.ImportModuleError",
            "Unable to import module '%s': %s" % (modname, e),
        )
    except SyntaxError as e:
        raise _Fault(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (modname, e),
            ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)],
        )
    try:
        return getattr(module, fname)
    except AttributeError:
        raise _Fault(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (fname, modname),
        )


# ---------------------------------------------------------------- main loop


def _on_signal(signum, frame):
    _flush()
    if getattr(_on_signal, "seen", False):
        os._exit(0)
    _on_signal.seen = True
    sys.exit(0)


def main():
    global _request_id

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    task_root = _env.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # sys.path[0] is this file's folder; the function's code takes its place.
    here = os.path.dirname(os.path.realpath(_THIS_FILE))
    if sys.path and os.path.realpath(sys.path[0] or ".") == here:
        sys.path[0] = task_root
    else:
        sys.path.insert(0, task_root)

    _setup_logging()
    api = _RuntimeApi(_env["AWS_LAMBDA_RUNTIME_API"])

    try:
        handler = _load_handler(_env.get("_HANDLER", ""))
    except _Fault as e:
        error = _make_error(e.msg, e.error_type, e.trace)
    except Exception:
        error = _exception_error()
    else:
        error = None
    if error is not None:
        _log_error(error)
        _flush()
        api.post(
            _API + "/init/error",
            _encode(error).encode("utf-8"),
            {
                _ERROR_TYPE_HEADER: _header_safe(error["errorType"]),
                "Content-Type": "application/json",
            },
        )
        sys.exit(1)

    # Hot path: everything below runs once per invocation.
    environ = os.environ
    loads = json.loads
    encode = _encode
    flush = _flush
    post = api.post
    next_invocation = api.next
    invocation_path = _API + "/invocation/"
    json_headers = {"Content-Type": "application/json"}

    while True:
        headers, body = next_invocation()
        request_id = headers.get("lambda-runtime-aws-request-id") or ""
        _request_id = request_id
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            environ.pop("_X_AMZN_TRACE_ID", None)

        error = None
        try:
            context = LambdaContext(request_id, headers)
            content_type = headers.get("content-type")
            if content_type is None or content_type.startswith("application/json"):
                try:
                    event = loads(body)
                except Exception as e:
                    raise _Fault(
                        "Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e
                    )
            else:
                event = body
            result = handler(event, context)
            if isinstance(result, bytes):
                payload, payload_type = result, "application/unknown"
            else:
                try:
                    payload = encode(result).encode("utf-8")
                except Exception as e:
                    raise _Fault(
                        "Runtime.MarshalError", "Unable to marshal response: %s" % e
                    )
                payload_type = None
        except _Fault as e:
            error = _make_error(e.msg, e.error_type, e.trace, request_id)
        except Exception:
            error = _exception_error(request_id)

        if error is None:
            flush()
            post(
                invocation_path + request_id + "/response",
                payload,
                json_headers
                if payload_type is None
                else {"Content-Type": payload_type},
            )
        else:
            _log_error(error)
            flush()
            post(
                invocation_path + request_id + "/error",
                encode(error).encode("utf-8"),
                {
                    _ERROR_TYPE_HEADER: _header_safe(error["errorType"]),
                    "Content-Type": "application/json",
                },
            )


if __name__ == "__main__":
    try:
        main()
    except (OSError, http.client.HTTPException, RuntimeError) as e:
        _write_stdout("[ERROR] Runtime API failure: %s: %s\n" % (e.__class__.__name__, e))
        _flush()
        sys.exit(1)
