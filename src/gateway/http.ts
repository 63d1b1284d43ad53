import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { Ajv, type ErrorObject } from "ajv";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import secureJson from "secure-json-parse";
import { type AdjustmentReason, adjustmentReasonNames } from "../engine/index.ts";
import { UnavailableError } from "../persistence/index.ts";
import type { Place } from "./allocate.ts";
import type { Principal } from "./auth.ts";
import { ApiCode, ApiError, invalid } from "./errors.ts";
import { parseLatitude, parseLongitude } from "./geo.ts";
import {
  cartJson,
  inventoryJson,
  levelJson,
  orderJson,
  productJson,
  reservationJson,
  warehouseJson,
} from "./json.ts";
import { gatewayLimits } from "./limits.ts";
import type { Metrics } from "./metrics.ts";
import { toMinorUnits } from "./money.ts";
import { Operation, type Service } from "./service.ts";
import type { ReserveInput } from "./stock.ts";

// The HTTP/JSON transport: Fastify (routing, body limit, JSON-schema
// validation with Ajv) in front of the service layer. Every answer that is
// not a success has one shape: {"error":{"code","message","details"}}.

declare module "fastify" {
  interface FastifyContextConfig {
    op?: Operation;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyReply {
    errorCode: string;
  }
}

export interface HttpOptions {
  logger: Logger;
  metrics: Metrics;
  /** The service once recovery is done; null before. */
  service: () => Service | null;
  /** True once a graceful stop began: new requests are refused. */
  stopping: () => boolean;
  /** What /readyz reports. */
  readiness: () => { ready: boolean; role: string; detail: string };
}

const id = { type: "string", minLength: 1, maxLength: 128 } as const;
const text = (maxLength: number) => ({ type: "string", maxLength }) as const;
const coordinate = { type: ["string", "number"] } as const;
const quantity = { type: "integer", minimum: 1, maximum: 1_000_000_000 } as const;
const page = {
  type: "object",
  properties: {
    cursor: text(512),
    pageSize: { type: "string", pattern: "^[1-9][0-9]{0,3}$" },
  },
  additionalProperties: false,
} as const;

/** The body of POST /v1/reservations (also the benchmark's JSON floor). */
export const reservationSchema = {
  type: "object",
  required: ["lines"],
  properties: {
    lines: {
      type: "array",
      minItems: 1,
      maxItems: 100,
      items: {
        type: "object",
        required: ["productId", "quantity"],
        properties: { productId: id, warehouseId: id, quantity },
        additionalProperties: false,
      },
    },
    holdSeconds: { type: "integer", minimum: 1, maximum: 30 * 24 * 3600 },
    lat: coordinate,
    long: coordinate,
  },
  additionalProperties: false,
} as const;

/** Ajv's settings for every body: strict, a string is not a number and an
 * extra field is an error. */
export const ajvOptions = {
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  allowUnionTypes: true,
} as const;

const schemas = {
  warehouse: {
    type: "object",
    required: ["name", "address", "lat", "long"],
    properties: {
      name: text(gatewayLimits.nameLengthMax),
      address: text(gatewayLimits.addressLengthMax),
      lat: coordinate,
      long: coordinate,
    },
    additionalProperties: false,
  },
  product: {
    type: "object",
    required: ["name", "price", "currency"],
    properties: {
      name: text(gatewayLimits.nameLengthMax),
      description: text(gatewayLimits.descriptionLengthMax),
      price: { type: "number" },
      currency: { type: "string", pattern: "^[A-Z]{3}$" },
      category: text(gatewayLimits.categoryLengthMax),
    },
    additionalProperties: false,
  },
  receipt: {
    type: "object",
    required: ["productId", "warehouseId", "quantity"],
    properties: { productId: id, warehouseId: id, quantity },
    additionalProperties: false,
  },
  adjustment: {
    type: "object",
    required: ["productId", "warehouseId", "delta", "reason"],
    properties: {
      productId: id,
      warehouseId: id,
      delta: {
        type: "integer",
        minimum: -1_000_000_000,
        maximum: 1_000_000_000,
        not: { const: 0 },
      },
      reason: { type: "string", enum: Object.values(adjustmentReasonNames) },
    },
    additionalProperties: false,
  },
  reservation: reservationSchema,
  fulfil: {
    type: ["object", "null"],
    properties: {
      quantities: {
        type: "array",
        minItems: 1,
        maxItems: 100,
        items: { type: "integer", minimum: 0, maximum: 1_000_000_000 },
      },
    },
    additionalProperties: false,
  },
  cartItem: {
    type: "object",
    required: ["productId", "quantity"],
    properties: {
      productId: id,
      quantity: { type: "integer", minimum: 0, maximum: 1_000_000_000 },
    },
    additionalProperties: false,
  },
  checkoutBody: {
    type: ["object", "null"],
    properties: { lat: coordinate, long: coordinate },
    additionalProperties: false,
  },
  checkoutQuery: {
    type: "object",
    required: ["cartId"],
    properties: { cartId: id },
    additionalProperties: false,
  },
  payment: {
    type: "object",
    required: ["status", "paymentId"],
    properties: {
      status: { type: "string", enum: ["SUCCEEDED", "FAILED"] },
      paymentId: { type: "string", minLength: 1, maxLength: gatewayLimits.keyLengthMax },
    },
    additionalProperties: false,
  },
  search: {
    type: "object",
    properties: { keyword: text(gatewayLimits.keywordLengthMax), ...page.properties },
    additionalProperties: false,
  },
  none: { type: "object", additionalProperties: false, properties: {} },
  idParam: { type: "object", properties: { id }, required: ["id"] },
  productParam: { type: "object", properties: { productId: id }, required: ["productId"] },
} as const;

type Body = Record<string, unknown>;

export function buildHttp(options: HttpOptions): FastifyInstance {
  const fast = reserveFastPath(options);
  const app = Fastify({
    // POST /v1/reservations, the hot path, skips Fastify when its request
    // is plainly well-formed (see reserveFastPath); the rest goes through it.
    serverFactory: (handler, opts) => {
      const server = createServer((req, res) => {
        // While stopping, every answer ends its connection.
        if (options.stopping()) res.setHeader("connection", "close");
        if (!fast(req, res)) handler(req, res);
      });
      // What Fastify sets on a server it makes itself (its defaults).
      const o = opts as {
        keepAliveTimeout?: number;
        requestTimeout?: number;
        connectionTimeout?: number;
      };
      server.keepAliveTimeout = o.keepAliveTimeout ?? 72_000;
      server.requestTimeout = o.requestTimeout ?? 0;
      server.setTimeout(o.connectionTimeout ?? 0);
      return server;
    },
    // No per-request logging (the hot path): errors are logged below.
    logger: false,
    bodyLimit: gatewayLimits.bodyBytesMax,
    // Path ids are up to 128 characters (the schema says so, with our error).
    routerOptions: { maxParamLength: 512 },
    // Refused while stopping by the onRequest hook, in our error shape.
    return503OnClosing: false,
    // Malformed URLs and the like, in our error shape too.
    frameworkErrors: (err, _req, reply) => {
      const e =
        err.code === "FST_ERR_BAD_URL" ? invalid(`malformed URL: ${err.message}`) : toApiError(err);
      reply.errorCode = e.code;
      void (reply as unknown as { code(n: number): { send(b: unknown): void } })
        .code(e.httpStatus)
        .send(e.toJSON());
    },
    ajv: { customOptions: { ...ajvOptions } },
  });
  app.decorateRequest("principal", null);
  // JSON only: without this Fastify would parse text/plain bodies itself.
  app.removeContentTypeParser("text/plain");
  app.decorateReply("errorCode", "");
  // One JSON parser for every route and the reservation fast path.
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (err) {
      done(err as ApiError, undefined);
    }
  });

  // Callback hooks, not async ones: no promise per request on the hot path
  // (a token seen before is checked without one too).
  app.addHook("onRequest", (req, _reply, done) => {
    const op = req.routeOptions.config.op;
    if (op === undefined) return done();
    let caller: Principal | Promise<Principal>;
    try {
      caller = admit(options, req.headers.authorization, op).caller;
    } catch (err) {
      return done(err as ApiError);
    }
    if (!(caller instanceof Promise)) {
      req.principal = caller;
      return done();
    }
    caller.then(
      (p) => {
        req.principal = p;
        done();
      },
      (err: ApiError) => done(err),
    );
  });
  app.addHook("onResponse", (req, reply, done) => {
    const op = req.routeOptions.config.op ?? req.routeOptions.url ?? "unknown";
    options.metrics.observe("http", op, reply.errorCode || "OK", reply.elapsedTime / 1000);
    done();
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = errorAnswer(err, options.logger, req.method, req.url);
    if (req.routeOptions.config.op === Operation.Reserve) options.metrics.reservation(e.code);
    reply.errorCode = e.code;
    return reply.code(e.httpStatus).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new ApiError(ApiCode.NotFound, `no route ${req.method} ${req.url.split("?")[0]}`);
    reply.errorCode = e.code;
    return reply.code(404).send(e.toJSON());
  });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const r = options.readiness();
    return reply.code(r.ready ? 200 : 503).send({
      status: r.ready ? "ready" : "not ready",
      role: r.role,
      detail: r.detail,
    });
  });
  app.get("/metrics", async (_req, reply) =>
    reply.type(options.metrics.contentType).send(await options.metrics.text()),
  );
  routes(app, () => options.service()!, options.metrics);
  return app;
}

function routes(app: FastifyInstance, svc: () => Service, metrics: Metrics): void {
  const op = (o: Operation) => ({ op: o });
  const who = (req: FastifyRequest) => req.principal!;

  app.post(
    "/v1/warehouses",
    { schema: { body: schemas.warehouse }, config: op(Operation.CreateWarehouse) },
    async (req, reply) => {
      const b = req.body as Body;
      const w = await svc().createWarehouse({
        name: b.name as string,
        address: b.address as string,
        lat: b.lat,
        long: b.long,
      });
      return reply.code(201).send(warehouseJson(w));
    },
  );
  app.get(
    "/v1/warehouses",
    { schema: { querystring: page }, config: op(Operation.ListWarehouses) },
    async (req) => {
      const q = req.query as Record<string, string>;
      const p = svc().listWarehouses(q.cursor, pageSizeOf(q.pageSize));
      return { warehouses: p.items.map(warehouseJson), ...cursorOf(p.nextCursor) };
    },
  );
  app.get(
    "/v1/warehouses/:id",
    { schema: { params: schemas.idParam }, config: op(Operation.GetWarehouse) },
    async (req) => warehouseJson(svc().getWarehouse((req.params as { id: string }).id)),
  );

  app.post(
    "/v1/products",
    { schema: { body: schemas.product }, config: op(Operation.CreateProduct) },
    async (req, reply) => {
      const b = req.body as Body;
      const currency = b.currency as string;
      const priceMinor = toMinorUnits(b.price, currency);
      if (typeof priceMinor !== "number") throw invalid(priceMinor.message, { field: "price" });
      const p = await svc().createProduct({
        name: b.name as string,
        description: (b.description as string | undefined) ?? "",
        priceMinor,
        currency,
        category: (b.category as string | undefined) ?? "",
      });
      return reply.code(201).send(productJson(p));
    },
  );
  app.get(
    "/v1/products",
    { schema: { querystring: schemas.search }, config: op(Operation.SearchProducts) },
    async (req) => {
      const q = req.query as Record<string, string>;
      const p = svc().searchProducts(q.keyword ?? "", q.cursor, pageSizeOf(q.pageSize));
      return { products: p.items.map(productJson), ...cursorOf(p.nextCursor) };
    },
  );
  app.get(
    "/v1/products/:id",
    { schema: { params: schemas.idParam }, config: op(Operation.GetProduct) },
    async (req) => productJson(svc().getProduct((req.params as { id: string }).id)),
  );

  app.post(
    "/v1/inventory/receipts",
    { schema: { body: schemas.receipt }, config: op(Operation.ReceiveStock) },
    async (req) => {
      const b = req.body as { productId: string; warehouseId: string; quantity: number };
      return levelJson(await svc().receiveStock(b.productId, b.warehouseId, b.quantity));
    },
  );
  app.post(
    "/v1/inventory/adjustments",
    { schema: { body: schemas.adjustment }, config: op(Operation.AdjustStock) },
    async (req) => {
      const b = req.body as {
        productId: string;
        warehouseId: string;
        delta: number;
        reason: string;
      };
      const reason = reasonOf(b.reason);
      return levelJson(await svc().adjustStock(b.productId, b.warehouseId, b.delta, reason));
    },
  );
  app.get(
    "/v1/inventory/:productId",
    { schema: { params: schemas.productParam }, config: op(Operation.GetInventory) },
    async (req) => {
      const { productId } = req.params as { productId: string };
      return inventoryJson(productId, await svc().inventory(productId));
    },
  );

  app.post(
    "/v1/reservations",
    { schema: { body: schemas.reservation }, config: op(Operation.Reserve) },
    async (req, reply) => {
      const r = await svc().reserve(reserveInputOf(req.body as ReservationBody, req.headers));
      metrics.reservation("HELD");
      if (r.replayed) reply.header("idempotent-replayed", "true");
      return reply.code(201).send(reservationJson(r));
    },
  );
  app.post(
    "/v1/reservations/:id/release",
    {
      schema: { params: schemas.idParam, body: schemas.checkoutBody },
      config: op(Operation.ReleaseReservation),
    },
    async (req) => reservationJson(await svc().release((req.params as { id: string }).id)),
  );
  app.post(
    "/v1/reservations/:id/fulfil",
    {
      schema: { params: schemas.idParam, body: schemas.fulfil },
      config: op(Operation.FulfilReservation),
    },
    async (req) => {
      const b = req.body as { quantities?: number[] } | undefined | null;
      return reservationJson(await svc().fulfil((req.params as { id: string }).id, b?.quantities));
    },
  );
  app.get(
    "/v1/reservations/:id",
    { schema: { params: schemas.idParam }, config: op(Operation.GetReservation) },
    async (req) => reservationJson(await svc().reservation((req.params as { id: string }).id)),
  );

  app.post(
    "/v1/cart/items",
    { schema: { body: schemas.cartItem }, config: op(Operation.SetCartItem) },
    async (req) => {
      const b = req.body as { productId: string; quantity: number };
      return cartJson(await svc().setCartItem(who(req), b.productId, b.quantity));
    },
  );
  app.get("/v1/cart/items", { config: op(Operation.GetCart) }, async (req) =>
    cartJson(svc().cart(who(req))),
  );
  app.post(
    "/v1/checkout",
    {
      schema: { querystring: schemas.checkoutQuery, body: schemas.checkoutBody },
      config: op(Operation.Checkout),
    },
    async (req, reply) => {
      const { cartId } = req.query as { cartId: string };
      const key = headerOf(req.headers, "idempotency-key");
      const shipTo = placeOf((req.body as Body | undefined | null) ?? {});
      const r = await svc().checkout(who(req), cartId, key, shipTo);
      return reply.code(r.created ? 201 : 200).send(orderJson(r.order));
    },
  );
  app.post(
    "/v1/orders/:id/payment",
    {
      schema: { params: schemas.idParam, body: schemas.payment },
      config: op(Operation.RecordPayment),
    },
    async (req) => {
      const b = req.body as { status: string; paymentId: string };
      const id = (req.params as { id: string }).id;
      return orderJson(await svc().recordPayment(id, b.status === "SUCCEEDED", b.paymentId));
    },
  );
  app.get(
    "/v1/orders/:id",
    { schema: { params: schemas.idParam }, config: op(Operation.GetOrder) },
    async (req) => orderJson(svc().order(who(req), (req.params as { id: string }).id)),
  );
  app.post(
    "/v1/orders/:id/cancel",
    {
      schema: { params: schemas.idParam, body: schemas.checkoutBody },
      config: op(Operation.CancelOrder),
    },
    async (req) => orderJson(await svc().cancel(who(req), (req.params as { id: string }).id)),
  );
}

function headerOf(headers: IncomingHttpHeaders, name: string): string {
  const v = headers[name];
  if (Array.isArray(v)) throw invalid(`${name} must be given once`, { field: name });
  return v ?? "";
}

function pageSizeOf(text: string | undefined): number | undefined {
  return text === undefined ? undefined : Number(text);
}

function cursorOf(next: string | undefined): { nextCursor?: string } {
  return next === undefined ? {} : { nextCursor: next };
}

function reasonOf(name: string): AdjustmentReason {
  for (const [k, v] of Object.entries(adjustmentReasonNames)) {
    if (v === name) return Number(k) as AdjustmentReason;
  }
  throw invalid(`reason must be one of ${Object.values(adjustmentReasonNames).join(", ")}`);
}

/** The shipping location of a body with `lat` and `long`, if it has one. */
function placeOf(b: Body): Place | undefined {
  if (b.lat === undefined && b.long === undefined) return undefined;
  const latitude = parseLatitude(b.lat);
  const longitude = parseLongitude(b.long);
  if (latitude === null || longitude === null) {
    throw invalid('lat and long must be given together, such as "12.8576° N" and "77.7864° E"', {
      field: latitude === null ? "lat" : "long",
    });
  }
  return { latitude, longitude };
}

/** Fastify's own errors (validation, body parsing, limits) in our shape. */
function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err;
  if ((err as Error) instanceof UnavailableError)
    return new ApiError(ApiCode.Unavailable, err.message);
  if (err.validation !== undefined) {
    return validationError(err.validationContext ?? "", err.validation[0]);
  }
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(
        ApiCode.PayloadTooLarge,
        `body larger than ${gatewayLimits.bodyBytesMax} bytes`,
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(ApiCode.UnsupportedMediaType, "bodies must be application/json");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return invalid("content-length does not match the body");
  }
  if (err instanceof SyntaxError || err.code === "FST_ERR_CTP_INVALID_JSON_BODY") {
    return invalid(`malformed JSON: ${err.message}`);
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return invalid(err.message);
  }
  return new ApiError(ApiCode.Internal, "internal error");
}

/**
 * Whether `op` may be served now, to the caller this authorization header
 * names: throws ApiError while stockd starts or stops, or for a token seen
 * before and refused. The caller is at hand when its token was verified
 * before (no promise on the hot path), else a promise of it.
 */
function admit(
  options: HttpOptions,
  header: string | undefined,
  op: Operation,
): { service: Service; caller: Principal | Promise<Principal> } {
  const service = options.service();
  if (service === null) throw new ApiError(ApiCode.Unavailable, "stockd is starting: recovering");
  if (options.stopping()) throw new ApiError(ApiCode.Unavailable, "stockd is stopping");
  return { service, caller: service.knownCaller(header, op) ?? service.caller(header, op) };
}

/** An error as the caller hears it; an internal one is logged. */
function errorAnswer(err: FastifyError, logger: Logger, method: string, url: string): ApiError {
  const e = toApiError(err);
  if (e.code === ApiCode.Internal) logger.error({ err, method, url }, "request failed");
  return e;
}

/** A reservation body, as its schema admits it. */
type ReservationBody = {
  lines: { productId: string; warehouseId?: string; quantity: number }[];
  holdSeconds?: number;
} & Body;

/** What the service is asked for a validated reservation body. */
function reserveInputOf(b: ReservationBody, headers: IncomingHttpHeaders): ReserveInput {
  return {
    lines: b.lines.map((l) => ({
      productId: l.productId,
      warehouseId: l.warehouseId ?? "",
      quantity: l.quantity,
    })),
    holdSeconds: b.holdSeconds ?? 0,
    requestId: headerOf(headers, "idempotency-key"),
    shipTo: placeOf(b),
  };
}

/** A JSON body: an empty one is no body (POST .../release); a malformed
 * one says where it broke; `__proto__` and `constructor.prototype` keys
 * are refused (prototype poisoning), as Fastify's own parser does. */
function parseJsonBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return secureJson.parse(text, undefined, { protoAction: "error", constructorAction: "error" });
  } catch (err) {
    throw invalid(`malformed JSON: ${(err as Error).message}`);
  }
}

/** A schema's first complaint about a part of the request ("body", ...). */
function validationError(
  context: string,
  first: { instancePath?: string; message?: string } | undefined,
): ApiError {
  const field = `${context}${first?.instancePath ?? ""}`;
  return invalid(`${field} ${first?.message ?? "is invalid"}`.trim(), { field });
}

// ---- the reservation fast path --------------------------------------------------------------

/** The media types the fast path takes; any other goes through Fastify. */
const jsonTypes = new Set(["application/json", "application/json; charset=utf-8"]);

/**
 * POST /v1/reservations without Fastify: a single reservation is the call
 * load testers and checkout services make most, and Fastify's routing,
 * hooks and reply machinery cost about as much server CPU as the
 * reservation itself. The fast path takes a request only when it is plainly
 * well-formed at the transport level (exactly this path with no query, a
 * JSON media type, a Content-Length within the body bound, no
 * Transfer-Encoding); any other request, including every unusual one, goes
 * through the Fastify route, which stays the reference.
 *
 * It answers exactly as that route does: the same order of checks (ready,
 * not stopping, token, then body), the same JSON parser settings
 * (secure-json-parse, prototype poisoning refused), the same schema and Ajv
 * settings, the same errors, headers and metrics. test/gateway checks both
 * paths with the same inputs.
 *
 * Returns false, having touched nothing, for a request it does not take.
 */
export function reserveFastPath(
  options: HttpOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const validate = new Ajv({ ...ajvOptions }).compile(reservationSchema);
  const { metrics, logger } = options;

  const send = (res: ServerResponse, status: number, value: unknown, replayed = false) => {
    const body = JSON.stringify(value);
    const headers: Record<string, string | number> = {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
    };
    if (replayed) headers["idempotent-replayed"] = "true";
    res.writeHead(status, headers);
    res.end(body);
  };

  const failed = (res: ServerResponse, started: number, err: unknown) => {
    const e = errorAnswer(err as FastifyError, logger, "POST", "/v1/reservations");
    metrics.reservation(e.code);
    send(res, e.httpStatus, e.toJSON());
    metrics.observe("http", Operation.Reserve, e.code, (performance.now() - started) / 1000);
  };

  const reserve = async (
    req: IncomingMessage,
    res: ServerResponse,
    service: Service,
    text: string,
    started: number,
  ) => {
    try {
      const body = parseJsonBody(text);
      if (!validate(body)) {
        throw validationError("body", (validate.errors as ErrorObject[] | null)?.[0]);
      }
      const r = await service.reserve(reserveInputOf(body as ReservationBody, req.headers));
      metrics.reservation("HELD");
      send(res, 201, reservationJson(r), r.replayed);
      metrics.observe("http", Operation.Reserve, "OK", (performance.now() - started) / 1000);
    } catch (err) {
      failed(res, started, err);
    }
  };

  /** Reads the body (its length is known and bounded), then reserves. */
  const read = (req: IncomingMessage, res: ServerResponse, service: Service, started: number) => {
    let text = "";
    // An aborted upload: there is no one left to answer.
    req.on("error", () => {});
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
    });
    req.on("end", () => void reserve(req, res, service, text, started));
  };

  return (req, res) => {
    if (req.url !== "/v1/reservations" || req.method !== "POST") return false;
    const h = req.headers;
    const type = h["content-type"];
    const length = h["content-length"];
    if (type === undefined || !jsonTypes.has(type)) return false;
    if (length === undefined || h["transfer-encoding"] !== undefined) return false;
    // A length that is not plain digits, or past the bound: Fastify's answer.
    if (!/^[0-9]{1,9}$/.test(length) || Number(length) > gatewayLimits.bodyBytesMax) return false;
    const started = performance.now();
    try {
      const { service, caller } = admit(options, h.authorization, Operation.Reserve);
      if (!(caller instanceof Promise)) {
        read(req, res, service, started);
        return true;
      }
      caller.then(
        () => read(req, res, service, started),
        (err: unknown) => failed(res, started, err),
      );
    } catch (err) {
      failed(res, started, err);
    }
    return true;
  };
}
