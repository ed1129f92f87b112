// Shoal's managed Node.js runtime loop (Node 18+, no dependencies).
//
// Shoal runs this file as `node $LAMBDA_RUNTIME_DIR/bootstrap.mjs` inside a function's
// execution environment. It speaks the Lambda Runtime API at AWS_LAMBDA_RUNTIME_API,
// loads the handler named by _HANDLER ("file.export", file may contain "/") from
// LAMBDA_TASK_ROOT and behaves like AWS Lambda's Node.js runtime (aws-lambda-ric):
// same context object, same error bodies ({errorType, errorMessage, trace}), same
// console log format ("<ISO time>\t<request id>\t<LEVEL>\t<message>").

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import { createRequire } from "node:module";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";

const env = process.env;
const API = "/2018-06-01/runtime";
const ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type";

// ------------------------------------------------------------------ errors

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
for (const E of [ImportModuleError, HandlerNotFound, MalformedHandlerName, UserCodeSyntaxError, UnhandledPromiseRejection]) {
  E.prototype.name = `Runtime.${E.name}`;
}

function isErrorLike(e) {
  return e && typeof e.name === "string" && typeof e.message === "string" && typeof e.stack === "string" && e.name && e.message && e.stack;
}

// The body posted to /error, exactly like aws-lambda-ric.
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return {
        errorType: error.name?.replace(/\x7F/g, "%7F"),
        errorMessage: error.message?.replace(/\x7F/g, "%7F"),
        trace: error.stack.replace(/\x7F/g, "%7F").split("\n"),
      };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch (_) {
    return {
      errorType: "handled",
      errorMessage:
        "callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack",
    };
  }
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

// "\t{...}" as Lambda logs an error next to "Invoke Error" / "Uncaught Exception".
function toFormatted(error) {
  const withProps = (_k, v) => {
    if (v instanceof Error) {
      const ret = Object.assign({ errorType: v.name, errorMessage: v.message, code: v.code }, v);
      if (typeof v.stack === "string") ret.stack = v.stack.split("\n");
      return ret;
    }
    return v;
  };
  try {
    return "\t" + JSON.stringify(error, withProps);
  } catch (_) {
    return "\t" + JSON.stringify(toRapidResponse(error));
  }
}

// A header value node:http accepts.
const headerSafe = (s) => String(s ?? "").replace(/[^\t\x20-\x7e]/g, "");

// ------------------------------------------------------------------ console

let currentRequestId; // undefined during init, like Lambda ("undefined" in log lines)

const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };

// LoggingConfig LogFormat JSON: each console call one JSON object, as Lambda's runtime writes.
function jsonRecord(level, message, params) {
  const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  if (params.length === 0 && message instanceof Error) {
    record.message = message.message;
    record.errorType = message.name;
    record.errorMessage = message.message;
    record.stackTrace = String(message.stack || "").split("\n");
  } else {
    record.message = util.format(message, ...params);
  }
  return JSON.stringify(record);
}

function patchConsole() {
  const minLevel = LEVELS[(env.AWS_LAMBDA_LOG_LEVEL || "").toUpperCase()] ?? LEVELS.TRACE;
  const json = (env.AWS_LAMBDA_LOG_FORMAT || "").toUpperCase() === "JSON";
  const out = process.stdout;
  const make = (level) => {
    if (LEVELS[level] < minLevel) return () => {};
    if (json) {
      return (message, ...params) => out.write(jsonRecord(level, message, params) + "\n");
    }
    return (message, ...params) => {
      const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(message, ...params)}`;
      out.write(line.replace(/\n/g, "\r") + "\n");
    };
  };
  console.trace = make("TRACE");
  console.debug = make("DEBUG");
  console.info = make("INFO");
  console.log = console.info;
  console.warn = make("WARN");
  console.error = make("ERROR");
  console.fatal = make("FATAL");
}

function logError(what, err) {
  console.error(what, toFormatted(intoError(err)));
}

// Wait until everything written to stdout/stderr is in the pipe.
function drained() {
  const waits = [];
  for (const s of [process.stdout, process.stderr]) {
    // Writes complete in order: the callback of an empty write runs once all earlier
    // writes are through ('drain' only fires after a write that returned false).
    if (s.writableLength > 0) waits.push(new Promise((r) => s.write("", () => r())));
  }
  return waits.length ? Promise.all(waits) : null;
}

// ------------------------------------------------------------------ Runtime API

const [apiHost, apiPortStr] = (env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001").split(":");
const apiPort = parseInt(apiPortStr || "80", 10);
// One keep-alive connection for the life of the process.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, urlPath, body, headers, retried) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: apiPort, method, path: urlPath, agent, headers },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", (e) => {
      // The server may have closed the idle keep-alive socket: retry once on a new one.
      if (!retried && req.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE")) {
        call(method, urlPath, body, headers, true).then(resolve, reject);
      } else {
        reject(e);
      }
    });
    req.end(body);
  });
}

async function post(urlPath, bodyString, extraHeaders) {
  const pending = drained();
  if (pending) await pending;
  const body = Buffer.from(bodyString, "utf8");
  const res = await call("POST", urlPath, body, {
    "Content-Type": "application/json",
    "Content-Length": body.length,
    ...extraHeaders,
  });
  if (res.status !== 202) {
    process.stdout.write(`[WARNING] Runtime API ${urlPath} returned ${res.status}: ${res.body.toString("utf8", 0, 300)}\n`);
  }
}

function postError(urlPath, error) {
  const response = toRapidResponse(error);
  return post(urlPath, JSON.stringify(response), { [ERROR_TYPE_HEADER]: headerSafe(response.errorType) });
}

// ------------------------------------------------------------------ response streaming

// As Lambda's Node runtime: `awslambda.streamifyResponse(handler)` marks a handler that
// takes (event, responseStream, context) and writes its response as it goes;
// `awslambda.HttpResponseStream.from(stream, {statusCode, headers, cookies})` puts the
// HTTP prelude a function URL reads in front of the body.
const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response";

globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = "response";
    return handler;
  },
  HttpResponseStream: class HttpResponseStream {
    static from(stream, prelude) {
      stream.setContentType(HTTP_INTEGRATION);
      stream.prelude = JSON.stringify(prelude ?? {});
      return stream;
    }
  },
};

// A Writable whose bytes go to /response as one chunked POST in streaming mode; an error
// after it began is reported in the body's trailers.
function responseStream(urlPath) {
  let req = null;
  let contentType = "application/octet-stream";
  let settle;
  const done = new Promise((resolve) => (settle = resolve));
  const open = () => {
    if (req) return req;
    req = http.request(
      {
        host: apiHost,
        port: apiPort,
        method: "POST",
        path: urlPath,
        agent,
        headers: {
          "Lambda-Runtime-Function-Response-Mode": "streaming",
          "Transfer-Encoding": "chunked",
          "Content-Type": contentType,
          Trailer: "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body",
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => settle());
        res.on("error", () => settle());
      },
    );
    req.on("error", (e) => {
      process.stdout.write(`[WARNING] Runtime API ${urlPath} failed: ${e}\n`);
      settle();
    });
    if (stream.prelude !== undefined) {
      req.write(stream.prelude);
      req.write(Buffer.alloc(8));
    }
    return req;
  };
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      open().write(chunk, callback);
    },
    final(callback) {
      open().end();
      callback();
    },
  });
  stream.setContentType = (type) => {
    contentType = type;
  };
  stream.fail = (error) => {
    const body = toRapidResponse(error);
    const r = open();
    r.addTrailers({
      "Lambda-Runtime-Function-Error-Type": headerSafe(body.errorType),
      "Lambda-Runtime-Function-Error-Body": Buffer.from(JSON.stringify(body)).toString("base64"),
    });
    r.end();
  };
  stream.done = done;
  return stream;
}

// ------------------------------------------------------------------ handler loading

const require = createRequire(import.meta.url);

async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes("..")) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new MalformedHandlerName("Bad handler");
  const [, moduleName, handlerPath] = match;

  let ns;
  try {
    const base = path.resolve(appRoot, moduleRoot, moduleName);
    let file;
    for (const candidate of [base, base + ".js", base + ".mjs", base + ".cjs"]) {
      try {
        if (fs.statSync(candidate).isFile()) {
          file = candidate;
          break;
        }
      } catch (_) {}
    }
    // Like Lambda, fall back to Node's resolution (node_modules packages, folders).
    if (!file) file = require.resolve(moduleName, { paths: [appRoot, path.resolve(appRoot, moduleRoot)] });
    // import() loads ES modules and CommonJS alike.
    ns = await import(pathToFileURL(file).href);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && (e.code === "MODULE_NOT_FOUND" || e.code === "ERR_MODULE_NOT_FOUND")) throw new ImportModuleError(e);
    throw e;
  }

  const resolve = (obj) => handlerPath.split(".").reduce((o, k) => o && o[k], obj);
  let fn = resolve(ns);
  if (fn === undefined && ns && ns.default) fn = resolve(ns.default); // CommonJS module.exports
  if (!fn) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof fn !== "function") throw new HandlerNotFound(`${fullHandler} is not a function`);
  return fn;
}

// ------------------------------------------------------------------ invocation

let current = null; // the invocation in progress: { id, onEmptyLoop }

// Run the handler; resolves with { error } or { result } following Lambda's rules:
// a returned promise settles it; callback/context.done/succeed/fail settle it; with
// callbackWaitsForEmptyEventLoop (default) a callback result, or a handler that never
// answers, is delivered when the event loop is empty.
function invoke(handler, event, headers, id, stream) {
  return new Promise((resolve) => {
    let finished = false;
    let waitForEmptyEventLoop = true;
    let pending = null;
    const finish = (outcome) => {
      if (finished) return;
      finished = true;
      current = null;
      resolve(outcome);
    };
    const done = (err, result) => {
      if (err !== undefined && err !== null) finish({ error: err });
      else finish({ result });
    };
    const callback = (err, result) => {
      if (finished || pending) return;
      if (err !== undefined && err !== null) finish({ error: err });
      else if (!waitForEmptyEventLoop) finish({ result });
      else pending = { result };
    };
    current = {
      id,
      onEmptyLoop: () => finish(pending ? { result: pending.result } : { result: null }),
    };

    try {
      const deadline = Number(headers["lambda-runtime-deadline-ms"]);
      const clientContext = headers["lambda-runtime-client-context"];
      const identity = headers["lambda-runtime-cognito-identity"];
      const context = {
        get callbackWaitsForEmptyEventLoop() {
          return waitForEmptyEventLoop;
        },
        set callbackWaitsForEmptyEventLoop(value) {
          waitForEmptyEventLoop = value;
        },
        succeed: (result) => done(null, result),
        fail: (err) => done(err === undefined || err === null ? "handled" : err, null),
        done,
        functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
        functionName: env.AWS_LAMBDA_FUNCTION_NAME,
        memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
        clientContext: parseHeaderJson(clientContext, "ClientContext"),
        identity: parseHeaderJson(identity, "CognitoIdentity"),
        invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
        awsRequestId: id,
        getRemainingTimeInMillis: () => deadline - Date.now(),
      };
      const result = stream
        ? handler(JSON.parse(event), stream, context)
        : handler(JSON.parse(event), context, callback);
      if (result && typeof result.then === "function") {
        result.then(
          (r) => done(null, r),
          (e) => done(e === undefined || e === null ? "handled" : e, null),
        );
      }
    } catch (err) {
      finish({ error: err });
    }
  });
}

function parseHeaderJson(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

// ------------------------------------------------------------------ main

async function reportFatal(what, error, exitCode) {
  logError(what, error);
  try {
    if (current) {
      await postError(`${API}/invocation/${encodeURIComponent(current.id)}/error`, error);
    } else if (!initialized) {
      await postError(`${API}/init/error`, error);
    }
    // Between invocations the only socket is busy with /next: nothing to report to.
  } finally {
    process.exit(exitCode);
  }
}

let initialized = false;

process.on("uncaughtException", (error) => {
  reportFatal("Uncaught Exception", error, 129);
});
process.on("unhandledRejection", (reason, promise) => {
  reportFatal("Unhandled Promise Rejection", new UnhandledPromiseRejection(reason, promise), 128);
});
process.on("beforeExit", () => {
  if (current) current.onEmptyLoop();
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));

async function main() {
  patchConsole();
  const appRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loadHandler(appRoot, env._HANDLER || "");
  } catch (error) {
    await reportFatal("Uncaught Exception", error, 129);
    return;
  }
  initialized = true;

  const nextPath = `${API}/invocation/next`;
  for (;;) {
    const next = await call("GET", nextPath);
    if (next.status !== 200) {
      throw new Error(`Runtime API ${nextPath} returned ${next.status}: ${next.body.toString("utf8", 0, 300)}`);
    }
    const headers = next.headers;
    const id = headers["lambda-runtime-aws-request-id"];
    currentRequestId = id;
    const traceId = headers["lambda-runtime-trace-id"];
    if (traceId) env._X_AMZN_TRACE_ID = traceId;
    else delete env._X_AMZN_TRACE_ID;

    const base = `${API}/invocation/${encodeURIComponent(id)}`;
    if (handler[STREAMING] === "response") {
      const stream = responseStream(`${base}/response`);
      const outcome = await invoke(handler, next.body.toString("utf8"), headers, id, stream);
      const pending = drained();
      if (pending) await pending;
      if ("error" in outcome) {
        logError("Invoke Error", outcome.error);
        stream.fail(outcome.error);
      } else if (!stream.writableEnded) {
        stream.end();
      }
      await stream.done;
      continue;
    }
    const outcome = await invoke(handler, next.body.toString("utf8"), headers, id);
    let body;
    if (!("error" in outcome)) {
      try {
        body = JSON.stringify(outcome.result === undefined ? null : outcome.result);
      } catch (_) {
        outcome.error = new Error("Unable to stringify response body");
      }
    }
    if ("error" in outcome) {
      logError("Invoke Error", outcome.error);
      await postError(`${base}/error`, outcome.error);
    } else {
      await post(`${base}/response`, body);
    }
  }
}

main().catch((e) => {
  process.stdout.write(`[ERROR] Runtime API failure: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
