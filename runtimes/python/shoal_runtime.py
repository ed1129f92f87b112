"""Shoal's managed Python runtime loop.

Shoal runs ``python3 -S -u $LAMBDA_RUNTIME_DIR/bootstrap.py`` inside a function's
execution environment; that two-line script imports this module and calls _run(). It speaks the Lambda Runtime API found at
AWS_LAMBDA_RUNTIME_API, loads the handler named by _HANDLER from LAMBDA_TASK_ROOT,
and behaves like AWS Lambda's Python runtime (awslambdaric): same context object,
same error bodies and errorType values, same log line formats.

Standard library only; Python 3.8+.

Cold start matters here, so the file imports next to nothing at start:
- ``-S`` skips the ``site`` module (its .pth processing is slow on some hosts);
  _add_site_packages() puts the interpreter's site-packages on sys.path instead.
- The Runtime API client is a small HTTP/1.1 client over one ``_socket``
  connection (``http.client`` pulls in the email package; ``socket`` pulls in enum).
- JSON goes through the ``_json`` C accelerator directly (``json`` pulls in re).
- ``traceback`` is imported on the first error, ``logging`` is set up when
  something first imports it (see _LateStdlib), ``decimal`` is never imported.
- Being imported as a module, its bytecode comes from __pycache__ (the server
  precompiles it when it starts) instead of being compiled on every start.

Response streaming (Python's counterpart of Node's ``awslambda.streamifyResponse``):
a handler that returns a generator streams its response. Each value it yields is sent
as it comes (``bytes`` as they are, ``str`` as UTF-8, anything else as JSON). When the
first value is a ``dict`` with a ``statusCode``, it is the HTTP prelude a function URL
answers with (``statusCode``, ``headers``, ``cookies``), as
``awslambda.HttpResponseStream.from`` writes it. An exception raised once streaming
began is reported as the invocation's error (in the body's trailers)::

    def handler(event, context):
        yield {"statusCode": 200, "headers": {"content-type": "text/plain"}}
        yield "first "
        time.sleep(1)
        yield "second"
"""

import os
import sys
import time

import _signal
import _socket

_THIS_FILE = os.path.abspath(__file__)
# Frames from this folder are the runtime's own (this file, or a stub importing it).
_THIS_DIR = os.path.dirname(_THIS_FILE)
_API = "/2018-06-01/runtime"
_NEXT = _API + "/invocation/next"
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# Lambda's StandardLogSink writes an error as ONE stdout line: the lines of the
# message are joined with "\r" and leading spaces become NO-BREAK SPACEs.
_ERROR_LOG_LINE_TERMINATE = "\r"
_ERROR_LOG_INDENT = "\u00a0"

_request_id = ""  # the invocation in progress, for log records

# sys.path as the interpreter set it up, without this file's folder: where the
# standard modules the runtime imports late are looked up (see _LateStdlib).
_BOOT_PATH = sys.path[1:]


# ---------------------------------------------------------------- startup


def _add_site_packages():
    """Append the interpreter's site-packages folders to sys.path, as ``site`` would
    (venv, user site, Debian dist-packages) but without processing .pth files."""
    path = os.path
    version = "python%d.%d" % sys.version_info[:2]
    if "t" in getattr(sys, "abiflags", ""):  # free-threaded build: lib/python3.13t
        version += "t"
    platlibdir = getattr(sys, "platlibdir", "lib")
    libdirs = [platlibdir] if platlibdir == "lib" else [platlibdir, "lib"]

    def site_dirs(prefix):
        return [path.join(prefix, libdir, version, "site-packages") for libdir in libdirs]

    dirs = []
    prefixes = [sys.prefix, sys.exec_prefix]
    user_site = not sys.flags.no_user_site and (
        os.geteuid() == os.getuid() and os.getegid() == os.getgid()
    )
    # A venv: without `site`, sys.prefix still names the base installation.
    venv = None
    if sys.executable:
        exe_dir = path.dirname(path.abspath(sys.executable))
        for conf in (path.join(exe_dir, "pyvenv.cfg"),
                     path.join(path.dirname(exe_dir), "pyvenv.cfg")):
            if path.isfile(conf):
                venv = path.dirname(exe_dir)
                system_site = "true"
                try:
                    with open(conf, encoding="utf-8") as f:
                        for line in f:
                            key, eq, value = line.partition("=")
                            if eq and key.strip().lower() == "include-system-site-packages":
                                system_site = value.strip().lower()
                except OSError:
                    pass
                dirs.extend(site_dirs(venv))
                if system_site == "true":
                    prefixes.insert(0, venv)
                else:
                    prefixes = []
                    user_site = False
                break
    if user_site:
        base = os.environ.get("PYTHONUSERBASE") or path.expanduser("~/.local")
        dirs.append(path.join(base, "lib", version, "site-packages"))
    seen = set()
    for prefix in prefixes:
        if prefix and prefix not in seen:
            seen.add(prefix)
            dirs.extend(site_dirs(prefix))
            if venv is None:  # Debian/Ubuntu system Pythons use dist-packages
                dirs.append(path.join(prefix, "local/lib", version, "dist-packages"))
                dirs.append(path.join(prefix, "lib/python3/dist-packages"))
                dirs.append(path.join(prefix, "lib", version, "dist-packages"))
    syspath = sys.path
    # The SDKs `shoal sdk install` provides (boto3): after the function's own code,
    # before the interpreter's packages, as Lambda's runtime has them.
    sdk = path.join(path.dirname(path.dirname(path.abspath(__file__))), "sdk", "python")
    if path.isdir(sdk):
        syspath.append(sdk)
    for d in dirs:
        if d not in syspath and path.isdir(d):
            syspath.append(d)


try:
    _add_site_packages()
except Exception:  # never fatal: a missing package shows up as an ImportModuleError
    pass


def _install_quit():
    # `site` also defines the exit() and quit() builtins, which some functions call.
    import builtins

    class Quitter(object):
        def __init__(self, name):
            self.name = name

        def __repr__(self):
            return "Use %s() or Ctrl-D (i.e. EOF) to exit" % self.name

        def __call__(self, code=None):
            try:
                sys.stdin.close()
            except Exception:
                pass
            raise SystemExit(code)

    for name in ("exit", "quit"):
        if not hasattr(builtins, name):
            setattr(builtins, name, Quitter(name))


_install_quit()


class _LateStdlib(object):
    """First on sys.meta_path: the standard modules the runtime imports only when it
    needs them still come from the interpreter's own path, as when the runtime
    imported them at start (a function's own logging.py or json.py does not replace
    them), and the first import of ``logging`` installs the Lambda log handler."""

    names = frozenset(("logging", "traceback", "json"))

    def find_spec(self, name, path=None, target=None):
        if path is not None or name not in self.names:
            return None
        spec = None
        finder = getattr(sys.modules.get("_frozen_importlib_external"), "PathFinder", None)
        if finder is not None:
            spec = finder.find_spec(name, _BOOT_PATH)
        if spec is None:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is not self and find is not None:
                    spec = find(name, path, target)
                    if spec is not None:
                        break
        if name == "logging" and spec is not None and spec.loader is not None:
            spec.loader = _SetupLoggingLoader(spec)
        return spec


class _SetupLoggingLoader(object):
    def __init__(self, spec):
        self.spec = spec
        self.loader = spec.loader

    def create_module(self, spec):
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        # The module keeps its real loader; this one only runs the setup after it.
        loader = self.spec.loader = module.__loader__ = self.loader
        loader.exec_module(module)
        try:
            _setup_logging(module)
        except Exception:
            pass


class _Fault(Exception):
    """An error the runtime itself reports with a Runtime.* errorType."""

    def __init__(self, error_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


# ---------------------------------------------------------------- Runtime API


class ProtocolError(Exception):
    """The Runtime API answered something that is not HTTP/1.1 as we know it."""


def _closed():
    return ConnectionResetError("Remote end closed connection without response")


class _RuntimeApi(object):
    """One keep-alive HTTP/1.1 connection for the whole life of the process.

    The Runtime API is Shoal's own (hyper) server on a local address: a minimal
    client is enough. Bodies: Content-Length, chunked, or up to the close."""

    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep or "]" in port:  # "host" alone, or "[v6]" alone
            host, port = address, "80"
        self.port = int(port)
        if host[:1] == "[" and host[-1:] == "]":
            host = host[1:-1]
        self.host = host
        if self.port == 80:
            self.host_header = "[%s]" % host if ":" in host else host
        else:
            self.host_header = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)
        self.sock = None
        self.buf = b""

    def _connect(self):
        host = self.host
        try:
            # bytes: a str host makes _socket encode it with the "idna" codec,
            # which imports re, unicodedata and stringprep (~10 ms).
            host = host.encode("ascii")
        except UnicodeError:
            pass
        error = None
        for family, kind, proto, _, addr in _socket.getaddrinfo(
            host, self.port, 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.settimeout(None)  # the long poll on /next has no time limit
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                sock.connect(addr)
                return sock
            except OSError as e:
                sock.close()
                error = e
        raise error or OSError("getaddrinfo returned no address for %r" % self.host)

    def close(self):
        sock, self.sock, self.buf = self.sock, None, b""
        if sock is not None:
            sock.close()

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise _closed()
        return data

    def _until(self, sep, limit):
        """Bytes up to sep (dropped), reading more as needed."""
        buf = self.buf
        i = buf.find(sep)
        while i < 0:
            if len(buf) > limit:
                raise ProtocolError("response line or header block too long")
            n = len(buf)
            buf += self._recv()
            i = buf.find(sep, max(n - len(sep) + 1, 0))
        self.buf = buf[i + len(sep):]
        return buf[:i]

    def _take(self, n):
        """The next n bytes."""
        buf = self.buf
        if len(buf) >= n:
            self.buf = buf[n:]
            return buf[:n]
        data = bytearray(n)
        view = memoryview(data)
        got = len(buf)
        view[:got] = buf
        self.buf = b""
        recv_into = self.sock.recv_into
        while got < n:
            k = recv_into(view[got:])
            if not k:
                raise _closed()
            got += k
        return bytes(data)

    def _read_response(self, method):
        while True:
            head = self._until(b"\r\n\r\n", 1 << 20).decode("latin-1").split("\r\n")
            parts = head[0].split(None, 2)
            try:
                version, status = parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise ProtocolError("bad status line: %r" % head[0][:100])
            if not version.startswith("HTTP/"):
                raise ProtocolError("bad status line: %r" % head[0][:100])
            headers = {}
            name = None
            for line in head[1:]:
                if line[:1] in (" ", "\t") and name is not None:  # obsolete folding
                    headers[name] += " " + line.strip()
                    continue
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError("bad header line: %r" % line[:100])
                name = name.strip().lower()
                headers[name] = value.strip()
            if 100 <= status < 200 and status != 101:
                continue  # an interim response: the real one follows
            break
        connection = headers.get("connection", "").lower()
        keep_alive = version == "HTTP/1.1" and "close" not in connection or (
            "keep-alive" in connection
        )
        if method == "HEAD" or status in (101, 204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                line = self._until(b"\r\n", 65536)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError("bad chunk size line: %r" % line[:100])
                if size == 0:
                    while self._until(b"\r\n", 65536):  # trailers
                        pass
                    break
                chunks.append(self._take(size))
                self._take(2)
            body = b"".join(chunks)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
                if length < 0:
                    raise ValueError
            except ValueError:
                raise ProtocolError("bad Content-Length: %r" % headers["content-length"])
            body = self._take(length)
        else:  # the body runs to the end of the connection
            chunks = [self.buf]
            self.buf = b""
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
            body = b"".join(chunks)
            keep_alive = False
        if not keep_alive:
            self.close()
        return status, headers, body

    def call(self, method, path, body=None, headers=None):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.host_header)
        if headers:
            for name, value in headers.items():
                head += "%s: %s\r\n" % (name, value)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        data = (head + "\r\n").encode("latin-1")
        if body is not None and len(body) < 65536:
            data += body
            body = None
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self.sock.sendall(data)
                if body:
                    self.sock.sendall(body)
                return self._read_response(method)
            except (ConnectionError, ProtocolError):
                # The server may have dropped the idle keep-alive connection:
                # reconnect once, then give up.
                self.close()
                if attempt:
                    raise

    def next(self):
        status, headers, body = self.call("GET", _NEXT)
        if status != 200:
            raise RuntimeError(
                "Runtime API %s returned %d: %r" % (_NEXT, status, body[:300])
            )
        return headers, body  # header names are lower-case

    def stream(self, path, chunks, on_error):
        """POSTs the pieces ``chunks`` yields (bytes, or a first ``(content_type, bytes)``
        pair) as one chunked body in streaming mode; an exception from ``chunks`` ends
        it with the error ``on_error()`` makes, in the trailers."""
        if self.sock is None:
            self.sock = self._connect()
        sock = self.sock
        first = next(chunks, None)
        content_type, data = first if isinstance(first, tuple) else ("application/octet-stream", first)
        head = (
            "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
            % (path, self.host_header, content_type)
        )
        sock.sendall(head.encode("latin-1"))
        trailers = b""
        try:
            while data is not None:
                if data:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                data = next(chunks, None)
        except Exception:
            error = on_error()
            import binascii

            encoded = binascii.b2a_base64(_encode(error).encode("utf-8"), newline=False)
            trailers = (
                "Lambda-Runtime-Function-Error-Type: %s\r\n" % _header_safe(error["errorType"])
            ).encode("latin-1") + b"Lambda-Runtime-Function-Error-Body: " + encoded + b"\r\n"
        sock.sendall(b"0\r\n" + trailers + b"\r\n")
        status, _, reply = self._read_response("POST")
        if status != 202:
            _write_stdout(
                "[WARNING]\tRuntime API %s returned %d: %s\n"
                % (path, status, reply[:300].decode("utf-8", "replace"))
            )

    def post(self, path, body, headers):
        status, _, data = self.call("POST", path, body, headers)
        if status != 202:
            _write_stdout(
                "[WARNING]\tRuntime API %s returned %d: %s\n"
                % (path, status, data[:300].decode("utf-8", "replace"))
            )


# ---------------------------------------------------------------- JSON


def _json_default(obj):
    # DynamoDB/boto3 hand out Decimals; Lambda's runtime writes them as numbers.
    # Any Decimal comes from an already imported decimal module.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj == obj.to_integral_value() and obj.as_tuple().exponent >= 0:
            return int(obj)
        return float(obj)
    raise TypeError(
        "Object of type %s is not JSON serializable" % obj.__class__.__name__
    )


class _ScanContext(object):
    # What json.JSONDecoder() hands to the scanner.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__
    memo = {}


def _json_codec():
    """(encode, loads): json.JSONEncoder(ensure_ascii=False, allow_nan=True,
    default=_json_default).encode and json.loads, on the C accelerator alone."""
    try:
        from _json import encode_basestring, make_encoder, make_scanner

        args = (_json_default, encode_basestring, None, ": ", ", ", False, False, True)
        make_encoder({}, *args)  # the same arguments JSONEncoder.iterencode passes
        scan = make_scanner(_ScanContext())
    except Exception:  # no accelerator, or not the one we know: the json package
        import json

        encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=True, default=_json_default
        )
        return encoder.encode, json.loads

    def encode(obj):
        # Same separators as Lambda's Python runtime (", " and ": "), no ASCII escaping.
        return "".join(make_encoder({}, *args)(obj, 0))

    def loads(data, _ws=" \t\n\r"):
        try:
            s = data if data.__class__ is str else data.decode("utf-8")
            obj, end = scan(s, len(s) - len(s.lstrip(_ws)))
            if end == len(s) or not s[end:].strip(_ws):
                return obj
        except Exception:
            pass
        # Not plain UTF-8 JSON, or not JSON at all: json.loads has the last word
        # (other encodings, and its exact error messages).
        import json

        return json.loads(data)

    return encode, loads


_encode, _loads = _json_codec()


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
        return _loads(value)
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


def _setup_logging(logging):
    # Runs when `logging` is first imported (by the function or a library), before
    # the importer gets the module: the root logger has the Lambda handler from the
    # start, as on Lambda (so logging.basicConfig() in a function does nothing).
    # Like Lambda: "[INFO]\t2024-01-01T00:00:00.123Z\t<request id>\tmessage".
    # The root logger stays at WARNING unless AWS_LAMBDA_LOG_LEVEL says otherwise.
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

    class _JsonFormatter(logging.Formatter):
        # LoggingConfig LogFormat JSON: one object a record, as Lambda's runtime writes.
        def format(self, record):
            import json
            import traceback

            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            entry = {
                "timestamp": "%s.%03dZ" % (stamp, int(record.msecs)),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "requestId": getattr(record, "aws_request_id", None) or "",
            }
            if record.exc_info and record.exc_info[0] is not None:
                kind, value, tb = record.exc_info
                entry["errorType"] = kind.__name__
                entry["errorMessage"] = str(value)
                entry["stackTrace"] = traceback.format_tb(tb)
            return json.dumps(entry, default=str) + "\n"

    logging.Formatter.converter = time.gmtime
    handler = _LambdaLoggerHandler()
    if (_env.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON":
        handler.setFormatter(_JsonFormatter())
    else:
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
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    i = 0
    while i < len(frames):
        fn = frames[i][0]
        if os.path.dirname(os.path.abspath(fn)) == _THIS_DIR or fn.startswith(
            "<frozen importlib"
        ) or (os.sep + "importlib" + os.sep in fn):
            i += 1
        else:
            break
    return traceback.format_list(frames[i:])


def _exception_error(request_id=""):
    etype, value, tb = sys.exc_info()
    return _make_error(str(value), etype.__name__, _user_frames(tb), request_id)


# ---------------------------------------------------------------- handler


def _import_module(name):
    # importlib.import_module without importing importlib (same lookup).
    if name.startswith("."):
        import importlib  # a relative name: let it explain the error

        return importlib.import_module(name)
    __import__(name)
    return sys.modules[name]


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
        module = _import_module(modname.replace("/", "."))
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

    _signal.signal(_signal.SIGTERM, _on_signal)
    _signal.signal(_signal.SIGINT, _on_signal)

    # The function's code first, then this file's folder, the interpreter's path
    # and site-packages (appended at start).
    sys.path.insert(0, _env.get("LAMBDA_TASK_ROOT") or os.getcwd())
    sys.meta_path.insert(0, _LateStdlib())
    if "logging" in sys.modules:
        _setup_logging(sys.modules["logging"])

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
    loads = _loads
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
            if hasattr(result, "send") and hasattr(result, "throw"):
                flush()
                api.stream(
                    invocation_path + request_id + "/response",
                    _stream_pieces(result),
                    lambda: _logged(_exception_error(request_id)),
                )
                continue
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


_HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"


def _piece(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return _encode(value).encode("utf-8")


def _stream_pieces(generator):
    """The pieces of a streaming handler's response: first (content type, bytes), then
    bytes; a first dict with a statusCode becomes the HTTP prelude."""
    first = next(generator, None)
    if isinstance(first, dict) and "statusCode" in first:
        yield (_HTTP_INTEGRATION, _encode(first).encode("utf-8") + b"\0" * 8)
    elif first is None:
        yield ("application/octet-stream", b"")
        return
    else:
        yield ("application/octet-stream", _piece(first))
    for value in generator:
        yield _piece(value)


def _logged(error):
    _log_error(error)
    _flush()
    return error


def _run():
    try:
        main()
    except (OSError, ProtocolError, RuntimeError) as e:
        _write_stdout("[ERROR] Runtime API failure: %s: %s\n" % (e.__class__.__name__, e))
        _flush()
        sys.exit(1)


if __name__ == "__main__":
    _run()
