import type { DescService } from "@bufbuild/protobuf";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CartService,
  CatalogService,
  InventoryService,
  OrderService,
  ReservationService,
} from "../../src/gen/stockd/v1/api_pb.ts";
import { GrpcClient, type GrpcFailure, type Harness, seed, startServer } from "./support.ts";

// A table of bad inputs, each with its expected status, and the data
// unchanged after all of them. A known state is seeded (warehouses,
// products, stock, a reservation, carts, an order) and everything a client
// can read of it is recorded; then every row of the HTTP and gRPC tables is
// sent to a real server, its answer checked, and the state read again: a
// refused request changes nothing.

/** Who sends a row: a token of this role/subject, or none. */
type Caller =
  | "admin"
  | "service"
  | "customerA"
  | "customerB"
  | "customerC"
  | "customerD"
  | "customerE"
  | "none";

/** Ids known once the state is seeded; rows name them as `$key` in any
 * string (path, body, request). */
interface Ctx {
  w1: string;
  w2: string;
  /** INR 100, stock in both warehouses. */
  p1: string;
  /** INR 250.5, stock in w1. */
  p2: string;
  /** USD 10. */
  pUsd: string;
  /** INR 100,000,000,000 (the highest price). */
  pBig: string;
  /** A service's open reservation of 2 x p1 in w1. */
  hold: string;
  /** Another, of 1 x p2 in w1, for the one row that could fulfil it. */
  hold2: string;
  /** Customer B's order, awaiting payment. */
  order: string;
  /** The reservation of customer B's order. */
  orderHold: string;
  /** Customer A's cart (two items, no order). */
  cartA: string;
  /** Customer B's cart (its order pending). */
  cartB: string;
  /** Customer C's cart (empty). */
  cartC: string;
  /** A page cursor of the product list without a keyword. */
  productCursor: string;
  /** A page cursor of the warehouse list. */
  warehouseCursor: string;
}

const BAD = "INVALID_ARGUMENT";
const NOT_FOUND = "NOT_FOUND";
const unknownProduct = "prd_00000000-0000-0000-0000-000000000000";
const unknownWarehouse = "wh_00000000-0000-0000-0000-000000000000";
const unknownOrder = "ord_00000000-0000-0000-0000-000000000000";
/** A well-formed hold id in partition 3 (of 8) that was never handed out. */
const unknownHold = String(1_000_000 * 1024 + 3);
const twoPow53Plus1 = "9007199254740993";
const long129 = "x".repeat(129);

/** A body sent as is (malformed JSON, another content type). */
class Raw {
  constructor(
    readonly text: string,
    readonly contentType = "application/json",
  ) {}
}

interface HttpCase {
  name: string;
  as: Caller;
  method: "GET" | "POST";
  path: string;
  /** JSON-encoded unless a Raw; undefined sends no body. */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  code: string;
}

function row(
  as: Caller,
  method: "GET" | "POST",
  path: string,
  name: string,
  body: unknown,
  status: number,
  code: string,
  headers?: Record<string, string>,
): HttpCase {
  return {
    // Long runs of one character (ids of 129 x) shown as "x*129".
    name: `${method} ${path.split("?")[0]!.replace(/(.)\1{19,}/g, (m, ch) => `${ch}*${m.length}`)}: ${name}`,
    as,
    method,
    path,
    body,
    status,
    code,
    ...(headers === undefined ? {} : { headers }),
  };
}

const omit = (o: Record<string, unknown>, key: string) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));

// ---- the HTTP table -------------------------------------------------------------

const warehouseOk = { name: "Pune", address: "Pune street", lat: "18.5204° N", long: "73.8567° E" };
const warehouse = (name: string, body: unknown, status = 400, code = BAD) =>
  row("admin", "POST", "/v1/warehouses", name, body, status, code);
const withLat = (lat: unknown) => ({ ...warehouseOk, lat });
const withLong = (long: unknown) => ({ ...warehouseOk, long });

const warehouseRows: HttpCase[] = [
  warehouse("missing name", omit(warehouseOk, "name")),
  warehouse("missing address", omit(warehouseOk, "address")),
  warehouse("missing lat", omit(warehouseOk, "lat")),
  warehouse("missing long", omit(warehouseOk, "long")),
  warehouse("extra field", { ...warehouseOk, capacity: 10 }),
  warehouse("name is a number", { ...warehouseOk, name: 5 }),
  warehouse("name is null", { ...warehouseOk, name: null }),
  warehouse("name is an array", { ...warehouseOk, name: ["Pune"] }),
  warehouse("name is empty", { ...warehouseOk, name: "" }),
  warehouse("name is blank", { ...warehouseOk, name: "   " }),
  warehouse("name of 201 characters", { ...warehouseOk, name: "n".repeat(201) }),
  warehouse("address is an object", { ...warehouseOk, address: { city: "Pune" } }),
  warehouse('lat "91° N"', withLat("91° N")),
  warehouse('lat "12° E" (a longitude)', withLat("12° E")),
  warehouse('lat "abc"', withLat("abc")),
  warehouse('lat ""', withLat("")),
  warehouse("lat 200", withLat(200)),
  warehouse("lat -90.5", withLat(-90.5)),
  warehouse('lat "-12° S" (sign and hemisphere)', withLat("-12° S")),
  warehouse('lat "1e1"', withLat("1e1")),
  warehouse('lat "NaN"', withLat("NaN")),
  warehouse("lat null", withLat(null)),
  warehouse("lat true", withLat(true)),
  warehouse("lat [12]", withLat([12])),
  warehouse('long "181° E"', withLong("181° E")),
  warehouse('long "12° N" (a latitude)', withLong("12° N")),
  warehouse("long -180.0001", withLong(-180.0001)),
  warehouse('malformed JSON {"name":', new Raw('{"name":')),
  warehouse("a JSON array", [warehouseOk]),
  warehouse("an empty JSON array", []),
  warehouse("JSON null", new Raw("null")),
  warehouse("a JSON string", new Raw('"Pune"')),
  warehouse("empty body, application/json", new Raw("")),
  warehouse("no body at all", undefined),
  warehouse(
    "text/plain",
    new Raw(JSON.stringify(warehouseOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  warehouse(
    "application/x-www-form-urlencoded",
    new Raw("name=Pune", "application/x-www-form-urlencoded"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  warehouse(
    "a body over 64 KB",
    { ...warehouseOk, address: "a".repeat(70_000) },
    413,
    "PAYLOAD_TOO_LARGE",
  ),
  warehouse(
    "__proto__ in the body",
    new Raw(`{"__proto__":{"x":1},${JSON.stringify(warehouseOk).slice(1)}`),
  ),
];

const listWarehouses = (name: string, query: string, status = 400, code = BAD) =>
  row("admin", "GET", `/v1/warehouses?${query}`, name, undefined, status, code);

const warehouseReadRows: HttpCase[] = [
  listWarehouses("pageSize 0", "pageSize=0"),
  listWarehouses("pageSize 101", "pageSize=101"),
  listWarehouses('pageSize "abc"', "pageSize=abc"),
  listWarehouses("pageSize -1", "pageSize=-1"),
  listWarehouses("pageSize 1.5", "pageSize=1.5"),
  listWarehouses("pageSize twice", "pageSize=1&pageSize=2"),
  listWarehouses('cursor "abc"', "cursor=abc"),
  listWarehouses('cursor "!!!"', "cursor=%21%21%21"),
  listWarehouses(
    "forged cursor (base64 of a made-up body)",
    `cursor=${Buffer.from('{"a":1,"h":"xxxxxxxx"}').toString("base64url")}`,
  ),
  listWarehouses("cursor of the product list", "cursor=$productCursor"),
  listWarehouses("cursor of 600 characters", `cursor=${"A".repeat(600)}`),
  listWarehouses("unknown query parameter", "sort=name"),
  row(
    "admin",
    "GET",
    `/v1/warehouses/${unknownWarehouse}`,
    "unknown id",
    undefined,
    404,
    NOT_FOUND,
  ),
  row("admin", "GET", `/v1/warehouses/${long129}`, "id of 129 characters", undefined, 400, BAD),
];

const productOk = { name: "Gadget", description: "", price: 10, currency: "INR", category: "test" };
const product = (name: string, body: unknown, status = 400, code = BAD) =>
  row("admin", "POST", "/v1/products", name, body, status, code);
const priced = (price: unknown, currency: unknown = "INR") => ({ ...productOk, price, currency });

const productRows: HttpCase[] = [
  product("missing name", omit(productOk, "name")),
  product("missing price", omit(productOk, "price")),
  product("missing currency", omit(productOk, "currency")),
  product("extra field", { ...productOk, stock: 5 }),
  product("name is empty", { ...productOk, name: "" }),
  product("name is a number", { ...productOk, name: 42 }),
  product("description of 5001 characters", { ...productOk, description: "d".repeat(5001) }),
  product("category of 101 characters", { ...productOk, category: "c".repeat(101) }),
  product("price 0", priced(0)),
  product("price -1", priced(-1)),
  product("price -0", new Raw(JSON.stringify(priced(0)).replace('"price":0', '"price":-0'))),
  product("price 1.234 INR (3 decimals)", priced(1.234)),
  product("price 0.001 INR", priced(0.001)),
  product("price 1e-7 INR", priced(1e-7)),
  product("price 1.5 JPY (no decimals)", priced(1.5, "JPY")),
  product("price 1.2345 KWD (4 decimals)", priced(1.2345, "KWD")),
  product('price "100"', priced("100")),
  product("price null", priced(null)),
  product("price [100]", priced([100])),
  product("price 1e12 INR (above the highest)", priced(1e12)),
  product("price 1e21 INR", priced(1e21)),
  product(
    "price 1e400 (Infinity)",
    new Raw(JSON.stringify(priced(1)).replace('"price":1', '"price":1e400')),
  ),
  product('currency "inr"', priced(10, "inr")),
  product('currency "XXX1"', priced(10, "XXX1")),
  product('currency "ABC" (not ISO 4217)', priced(10, "ABC")),
  product('currency ""', priced(10, "")),
  product("currency 356", priced(10, 356)),
  product("a JSON array", [productOk]),
  product("malformed JSON", new Raw('{"name":')),
  product(
    "text/plain",
    new Raw(JSON.stringify(productOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
];

const search = (name: string, query: string, status = 400, code = BAD) =>
  row("customerA", "GET", `/v1/products?${query}`, name, undefined, status, code);

const productReadRows: HttpCase[] = [
  search("keyword of 201 characters", `keyword=${"k".repeat(201)}`),
  search("pageSize 0", "pageSize=0"),
  search("pageSize 101", "pageSize=101"),
  search('pageSize "abc"', "pageSize=abc"),
  search('cursor "garbage"', "cursor=garbage"),
  search("cursor of the warehouse list", "cursor=$warehouseCursor"),
  search("cursor made for no keyword, sent with one", "keyword=widget&cursor=$productCursor"),
  search("unknown query parameter", "q=widget"),
  row("admin", "GET", `/v1/products/${unknownProduct}`, "unknown id", undefined, 404, NOT_FOUND),
  row("admin", "GET", `/v1/products/${long129}`, "id of 129 characters", undefined, 400, BAD),
  row(
    "admin",
    "GET",
    `/v1/products/${"x".repeat(110)}`,
    "unknown id of 110 characters",
    undefined,
    404,
    NOT_FOUND,
  ),
  row("admin", "GET", "/v1/products/%E0%A4%A", "id with a broken %-escape", undefined, 400, BAD),
];

const receiptOk = { productId: "$p1", warehouseId: "$w1", quantity: 5 };
const receipt = (name: string, body: unknown, status = 400, code = BAD) =>
  row("admin", "POST", "/v1/inventory/receipts", name, body, status, code);
const received = (quantity: unknown) => ({ ...receiptOk, quantity });

const receiptRows: HttpCase[] = [
  receipt("missing productId", omit(receiptOk, "productId")),
  receipt("missing warehouseId", omit(receiptOk, "warehouseId")),
  receipt("missing quantity", omit(receiptOk, "quantity")),
  receipt("extra field", { ...receiptOk, note: "x" }),
  receipt('quantity "5"', received("5")),
  receipt("quantity 0", received(0)),
  receipt("quantity -1", received(-1)),
  receipt("quantity 1.5", received(1.5)),
  receipt("quantity 1e10", received(1e10)),
  receipt(
    "quantity 2^53+1",
    new Raw(`{"productId":"$p1","warehouseId":"$w1","quantity":${twoPow53Plus1}}`),
  ),
  receipt("quantity null", received(null)),
  receipt("quantity [5]", received([5])),
  receipt("productId is a number", { ...receiptOk, productId: 7 }),
  receipt('productId ""', { ...receiptOk, productId: "" }),
  receipt("unknown product", { ...receiptOk, productId: unknownProduct }, 404, NOT_FOUND),
  receipt("unknown warehouse", { ...receiptOk, warehouseId: unknownWarehouse }, 404, NOT_FOUND),
  receipt("malformed JSON", new Raw('{"productId":')),
  receipt("empty body", new Raw("")),
  receipt(
    "text/plain",
    new Raw(JSON.stringify(receiptOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
];

const adjustmentOk = { productId: "$p1", warehouseId: "$w1", delta: -1, reason: "DAMAGE" };
const adjustment = (name: string, body: unknown, status = 400, code = BAD) =>
  row("admin", "POST", "/v1/inventory/adjustments", name, body, status, code);

const adjustmentRows: HttpCase[] = [
  adjustment("delta 0", { ...adjustmentOk, delta: 0 }),
  adjustment('reason "THEFT" (unknown)', { ...adjustmentOk, reason: "THEFT" }),
  adjustment('reason "damage" (lower case)', { ...adjustmentOk, reason: "damage" }),
  adjustment("reason 2 (a number)", { ...adjustmentOk, reason: 2 }),
  adjustment("missing reason", omit(adjustmentOk, "reason")),
  adjustment("missing delta", omit(adjustmentOk, "delta")),
  adjustment('delta "-1"', { ...adjustmentOk, delta: "-1" }),
  adjustment("delta 1.5", { ...adjustmentOk, delta: 1.5 }),
  adjustment("delta -1e10", { ...adjustmentOk, delta: -1e10 }),
  adjustment("extra field", { ...adjustmentOk, by: "me" }),
  adjustment("unknown product", { ...adjustmentOk, productId: unknownProduct }, 404, NOT_FOUND),
  adjustment(
    "unknown warehouse",
    { ...adjustmentOk, warehouseId: unknownWarehouse },
    404,
    NOT_FOUND,
  ),
  adjustment(
    "below zero available",
    { ...adjustmentOk, delta: -100_000 },
    409,
    "INSUFFICIENT_STOCK",
  ),
  row(
    "admin",
    "GET",
    `/v1/inventory/${unknownProduct}`,
    "unknown product",
    undefined,
    404,
    NOT_FOUND,
  ),
  row("admin", "GET", `/v1/inventory/${long129}`, "id of 129 characters", undefined, 400, BAD),
];

const line = (over: Record<string, unknown> = {}) => ({
  productId: "$p1",
  warehouseId: "$w1",
  quantity: 1,
  ...over,
});
const reserveOk = { lines: [line()] };
const reserve = (
  name: string,
  body: unknown,
  status = 400,
  code = BAD,
  headers?: Record<string, string>,
) => row("service", "POST", "/v1/reservations", name, body, status, code, headers);
const lineWith = (over: Record<string, unknown>) => ({ lines: [line(over)] });

const reservationRows: HttpCase[] = [
  reserve("missing lines", {}),
  reserve("empty lines array", { lines: [] }),
  reserve("101 lines", { lines: Array.from({ length: 101 }, () => line()) }),
  reserve('lines "x"', { lines: "x" }),
  reserve("lines null", { lines: null }),
  reserve("extra top-level field", { ...reserveOk, priority: 1 }),
  reserve("extra line field", lineWith({ sku: "x" })),
  reserve("line without productId", { lines: [omit(line(), "productId")] }),
  reserve("line without quantity", { lines: [omit(line(), "quantity")] }),
  reserve('quantity "5"', lineWith({ quantity: "5" })),
  reserve("quantity 0", lineWith({ quantity: 0 })),
  reserve("quantity -1", lineWith({ quantity: -1 })),
  reserve("quantity 1.5", lineWith({ quantity: 1.5 })),
  reserve("quantity 1e10", lineWith({ quantity: 1e10 })),
  reserve(
    "quantity 2^53+1",
    new Raw(`{"lines":[{"productId":"$p1","warehouseId":"$w1","quantity":${twoPow53Plus1}}]}`),
  ),
  reserve(
    "quantity 1e400",
    new Raw('{"lines":[{"productId":"$p1","warehouseId":"$w1","quantity":1e400}]}'),
  ),
  reserve("quantity null", lineWith({ quantity: null })),
  reserve("quantity [1]", lineWith({ quantity: [1] })),
  reserve("productId is a number", lineWith({ productId: 1 })),
  reserve('warehouseId ""', lineWith({ warehouseId: "" })),
  reserve("unknown product", lineWith({ productId: unknownProduct }), 404, NOT_FOUND),
  reserve("unknown warehouse", lineWith({ warehouseId: unknownWarehouse }), 404, NOT_FOUND),
  reserve(
    "a good line and an unknown product",
    { lines: [line(), line({ productId: unknownProduct })] },
    404,
    NOT_FOUND,
  ),
  reserve("more than there is", lineWith({ quantity: 1000 }), 409, "OUT_OF_STOCK"),
  reserve(
    "a good line and one more than there is (all or nothing)",
    { lines: [line({ productId: "$p2" }), line({ quantity: 1000 })] },
    409,
    "OUT_OF_STOCK",
  ),
  reserve("holdSeconds 0", { ...reserveOk, holdSeconds: 0 }),
  reserve("holdSeconds -1", { ...reserveOk, holdSeconds: -1 }),
  reserve("holdSeconds 30 days + 1 s", { ...reserveOk, holdSeconds: 30 * 24 * 3600 + 1 }),
  reserve("holdSeconds 1.5", { ...reserveOk, holdSeconds: 1.5 }),
  reserve('holdSeconds "60"', { ...reserveOk, holdSeconds: "60" }),
  reserve('lat "91° N"', { lines: [line({ warehouseId: undefined })], lat: "91° N", long: "0° E" }),
  reserve("lat without long", { lines: [line({ warehouseId: undefined })], lat: "12° N" }),
  reserve('long "200° E"', { lines: [line({ warehouseId: undefined })], lat: 0, long: "200° E" }),
  reserve("lat null", { ...reserveOk, lat: null, long: 0 }),
  reserve("Idempotency-Key of 129 characters", reserveOk, 400, BAD, {
    "idempotency-key": long129,
  }),
  reserve('Idempotency-Key "clé" (not ASCII)', reserveOk, 400, BAD, { "idempotency-key": "clé" }),
  reserve("Idempotency-Key of UTF-8 bytes", reserveOk, 400, BAD, {
    "idempotency-key": Buffer.from("ключ").toString("latin1"),
  }),
  reserve('Idempotency-Key "a b" (a space)', reserveOk, 400, BAD, { "idempotency-key": "a b" }),
  reserve("malformed JSON", new Raw('{"lines":[')),
  reserve(
    "__proto__ in the body",
    new Raw('{"__proto__":{"x":1},"lines":[{"productId":"$p1","warehouseId":"$w1","quantity":1}]}'),
  ),
  reserve(
    "constructor.prototype in the body",
    new Raw(
      '{"constructor":{"prototype":{"x":1}},"lines":[{"productId":"$p1","warehouseId":"$w1","quantity":1}]}',
    ),
  ),
  reserve("a JSON array", [reserveOk]),
  reserve("empty body", new Raw("")),
  reserve("no body", undefined),
  reserve(
    "text/plain",
    new Raw(JSON.stringify(reserveOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  reserve(
    "a body over 64 KB",
    { lines: Array.from({ length: 100 }, () => line({ productId: "p".repeat(700) })) },
    413,
    "PAYLOAD_TOO_LARGE",
  ),
];

/** Reservation ids that are not positive whole numbers below 2^53. */
const malformedHoldIds = ["abc", "0", "-1", "1.5", "12345678901234567890", "01", "1e3", "+5"];
const holdPath = (id: string, action: string) =>
  `/v1/reservations/${encodeURIComponent(id)}${action}`;

const holdRows: HttpCase[] = [
  ...malformedHoldIds.flatMap((id) => [
    row("service", "POST", holdPath(id, "/release"), `id "${id}"`, undefined, 400, BAD),
    row("service", "POST", holdPath(id, "/fulfil"), `id "${id}"`, undefined, 400, BAD),
    row("service", "GET", holdPath(id, ""), `id "${id}"`, undefined, 400, BAD),
  ]),
  ...[unknownHold, "5", "9007199254740991"].flatMap((id) => [
    row(
      "service",
      "POST",
      holdPath(id, "/release"),
      `unknown id ${id}`,
      undefined,
      404,
      "HOLD_NOT_FOUND",
    ),
    row(
      "service",
      "POST",
      holdPath(id, "/fulfil"),
      `unknown id ${id}`,
      undefined,
      404,
      "HOLD_NOT_FOUND",
    ),
    row("service", "GET", holdPath(id, ""), `unknown id ${id}`, undefined, 404, "HOLD_NOT_FOUND"),
  ]),
  ...[
    ["extra field", { reason: "x" }],
    ["a JSON array", []],
    ["malformed JSON", new Raw("{")],
    ["text/plain", new Raw("{}", "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE"],
  ].map(([name, body, status, code]) =>
    row(
      "service",
      "POST",
      "/v1/reservations/$hold/release",
      name as string,
      body,
      (status as number | undefined) ?? 400,
      (code as string | undefined) ?? BAD,
    ),
  ),
  ...[
    ["quantities [-1]", { quantities: [-1] }],
    ['quantities ["1"]', { quantities: ["1"] }],
    ["quantities [1.5]", { quantities: [1.5] }],
    ["quantities [1e10]", { quantities: [1e10] }],
    ["quantities null", { quantities: null }],
    ['quantities "all"', { quantities: "all" }],
    ["101 quantities", { quantities: Array.from({ length: 101 }, () => 1) }],
    ["quantities [1, 1] for a hold of 1 line", { quantities: [1, 1] }],
    ["quantities [3] for a line holding 2", { quantities: [3] }],
    ["extra field", { quantities: [1], note: "x" }],
    ["a JSON array", [1]],
    ["malformed JSON", new Raw('{"quantities":[')],
    ["text/plain", new Raw("{}", "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE"],
  ].map(([name, body, status, code]) =>
    row(
      "service",
      "POST",
      "/v1/reservations/$hold/fulfil",
      name as string,
      body,
      (status as number | undefined) ?? 400,
      (code as string | undefined) ?? BAD,
    ),
  ),
];

const cartItemOk = { productId: "$p1", quantity: 3 };
const cartItem = (
  name: string,
  body: unknown,
  status = 400,
  code = BAD,
  as: Caller = "customerA",
) => row(as, "POST", "/v1/cart/items", name, body, status, code);

const cartRows: HttpCase[] = [
  cartItem("missing productId", omit(cartItemOk, "productId")),
  cartItem("missing quantity", omit(cartItemOk, "quantity")),
  cartItem("extra field", { ...cartItemOk, price: 1 }),
  cartItem('quantity "5"', { ...cartItemOk, quantity: "5" }),
  cartItem("quantity -1", { ...cartItemOk, quantity: -1 }),
  cartItem("quantity 1.5", { ...cartItemOk, quantity: 1.5 }),
  cartItem("quantity 1e10", { ...cartItemOk, quantity: 1e10 }),
  cartItem("quantity 2^53+1", new Raw(`{"productId":"$p1","quantity":${twoPow53Plus1}}`)),
  cartItem("quantity null", { ...cartItemOk, quantity: null }),
  cartItem('productId ""', { ...cartItemOk, productId: "" }),
  cartItem("productId is a number", { ...cartItemOk, productId: 3 }),
  cartItem("unknown product", { ...cartItemOk, productId: unknownProduct }, 404, NOT_FOUND),
  cartItem(
    "unknown product, quantity 0",
    { productId: unknownProduct, quantity: 0 },
    404,
    NOT_FOUND,
  ),
  cartItem(
    "a USD product in an INR cart",
    { productId: "$pUsd", quantity: 1 },
    409,
    "CURRENCY_MISMATCH",
  ),
  cartItem("a line total above 2^53 minor units", { productId: "$pBig", quantity: 1e9 }),
  cartItem(
    "a cart with an order awaiting payment",
    { productId: "$p1", quantity: 1 },
    409,
    "CART_LOCKED",
    "customerB",
  ),
  cartItem("a JSON array", [cartItemOk]),
  cartItem("malformed JSON", new Raw('{"productId":')),
  cartItem("empty body", new Raw("")),
  cartItem(
    "text/plain",
    new Raw(JSON.stringify(cartItemOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
];

const checkout = (
  name: string,
  query: string,
  body: unknown,
  status = 400,
  code = BAD,
  as: Caller = "customerA",
  headers?: Record<string, string>,
) => row(as, "POST", `/v1/checkout${query}`, name, body, status, code, headers);

const checkoutRows: HttpCase[] = [
  checkout("no cartId", "", undefined),
  checkout('cartId ""', "?cartId=", undefined),
  checkout("cartId of 129 characters", `?cartId=${long129}`, undefined),
  checkout("cartId twice", "?cartId=$cartA&cartId=$cartA", undefined),
  checkout("unknown query parameter", "?cartId=$cartA&express=1", undefined),
  checkout("another customer's cart", "?cartId=$cartB", undefined, 404, NOT_FOUND),
  checkout("an empty customer's cart id", "?cartId=$cartC", undefined, 404, NOT_FOUND),
  checkout("an unknown cart", "?cartId=cart_nope", undefined, 404, NOT_FOUND),
  checkout("an empty cart", "?cartId=$cartC", undefined, 409, "CART_EMPTY", "customerC"),
  checkout("body with an extra field", "?cartId=$cartA", { lat: 12, long: 77, gift: true }),
  checkout('body lat "91° N"', "?cartId=$cartA", { lat: "91° N", long: "77° E" }),
  checkout("body lat without long", "?cartId=$cartA", { lat: "12° N" }),
  checkout('body long "12° N"', "?cartId=$cartA", { lat: "12° N", long: "12° N" }),
  checkout("a JSON array", "?cartId=$cartA", []),
  checkout("malformed JSON", "?cartId=$cartA", new Raw('{"lat":')),
  checkout(
    "text/plain",
    "?cartId=$cartA",
    new Raw("{}", "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  checkout(
    "Idempotency-Key of 129 characters",
    "?cartId=$cartA",
    undefined,
    400,
    BAD,
    "customerA",
    {
      "idempotency-key": long129,
    },
  ),
  checkout(
    'Idempotency-Key "clé" (not ASCII)',
    "?cartId=$cartA",
    undefined,
    400,
    BAD,
    "customerA",
    {
      "idempotency-key": "clé",
    },
  ),
];

const paymentOk = { status: "FAILED", paymentId: "pay-1" };
const payment = (name: string, body: unknown, status = 400, code = BAD, id = "$order") =>
  row("service", "POST", `/v1/orders/${id}/payment`, name, body, status, code);

const orderRows: HttpCase[] = [
  payment('status "PENDING" (unknown)', { ...paymentOk, status: "PENDING" }),
  payment('status "succeeded" (lower case)', { ...paymentOk, status: "succeeded" }),
  payment("status 1", { ...paymentOk, status: 1 }),
  payment("status null", { ...paymentOk, status: null }),
  payment("missing status", omit(paymentOk, "status")),
  payment("missing paymentId", omit(paymentOk, "paymentId")),
  payment('paymentId ""', { ...paymentOk, paymentId: "" }),
  payment("paymentId of 129 characters", { ...paymentOk, paymentId: long129 }),
  payment("paymentId is a number", { ...paymentOk, paymentId: 12 }),
  payment("extra field", { ...paymentOk, amount: 10 }),
  payment("a JSON array", [paymentOk]),
  payment("empty body", new Raw("")),
  payment("malformed JSON", new Raw('{"status":')),
  payment(
    "text/plain",
    new Raw(JSON.stringify(paymentOk), "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  payment("unknown order", paymentOk, 404, NOT_FOUND, unknownOrder),
  payment(
    "succeeded, unknown order",
    { ...paymentOk, status: "SUCCEEDED" },
    404,
    NOT_FOUND,
    unknownOrder,
  ),
  row("admin", "GET", `/v1/orders/${unknownOrder}`, "unknown order", undefined, 404, NOT_FOUND),
  row("admin", "GET", `/v1/orders/${long129}`, "id of 129 characters", undefined, 400, BAD),
  row(
    "admin",
    "POST",
    `/v1/orders/${unknownOrder}/cancel`,
    "unknown order",
    undefined,
    404,
    NOT_FOUND,
  ),
  row(
    "customerA",
    "POST",
    "/v1/orders/$order/cancel",
    "another customer's order",
    undefined,
    404,
    NOT_FOUND,
  ),
  row(
    "customerA",
    "GET",
    "/v1/orders/$order",
    "another customer's order",
    undefined,
    404,
    NOT_FOUND,
  ),
  row(
    "admin",
    "POST",
    "/v1/orders/$order/cancel",
    "body with an extra field",
    { reason: "x" },
    400,
    BAD,
  ),
  row("admin", "POST", "/v1/orders/$order/cancel", "a JSON array", [], 400, BAD),
  row("admin", "POST", "/v1/orders/$order/cancel", "malformed JSON", new Raw("{"), 400, BAD),
  row(
    "admin",
    "POST",
    "/v1/orders/$order/cancel",
    "text/plain",
    new Raw("{}", "text/plain"),
    415,
    "UNSUPPORTED_MEDIA_TYPE",
  ),
  row("admin", "GET", "/v1/nothing-here", "no such route", undefined, 404, NOT_FOUND),
  row("admin", "POST", "/v1/inventory", "no such route", undefined, 404, NOT_FOUND),
];

const httpRows: HttpCase[] = [
  ...warehouseRows,
  ...warehouseReadRows,
  ...productRows,
  ...productReadRows,
  ...receiptRows,
  ...adjustmentRows,
  ...reservationRows,
  ...holdRows,
  ...cartRows,
  ...checkoutRows,
  ...orderRows,
];

// ---- the gRPC table -------------------------------------------------------------

interface GrpcCase {
  name: string;
  as: Caller;
  service: DescService;
  method: string;
  request: object;
  code: GrpcStatus;
  reason: string;
}

function g(
  service: DescService,
  method: string,
  as: Caller,
  name: string,
  request: object,
  code: GrpcStatus,
  reason: string,
): GrpcCase {
  return { name: `${service.name}.${method}: ${name}`, as, service, method, request, code, reason };
}

const INVALID = GrpcStatus.INVALID_ARGUMENT;
const MISSING = GrpcStatus.NOT_FOUND;
const PRECONDITION = GrpcStatus.FAILED_PRECONDITION;
const int64Max = 2n ** 63n - 1n;
const bigQuantities: [string, bigint][] = [
  ["quantity 0", 0n],
  ["quantity -1", -1n],
  ["quantity 2^53+1", 2n ** 53n + 1n],
  ["quantity 1e10", 10_000_000_000n],
  ["quantity 2^63-1", int64Max],
  ["quantity -2^63", -(2n ** 63n)],
];

const grpcLine = (over: Record<string, unknown> = {}) => ({
  productId: "$p1",
  warehouseId: "$w1",
  quantity: 1n,
  ...over,
});
const catalog = (method: string, name: string, req: object, code = INVALID, reason = BAD) =>
  g(CatalogService, method, "admin", name, req, code, reason);
const inventory = (method: string, name: string, req: object, code = INVALID, reason = BAD) =>
  g(InventoryService, method, "admin", name, req, code, reason);
const reservations = (method: string, name: string, req: object, code = INVALID, reason = BAD) =>
  g(ReservationService, method, "service", name, req, code, reason);
const grpcWarehouse = {
  name: "Pune",
  address: "Pune street",
  lat: "18.5204° N",
  long: "73.8567° E",
};
const grpcProduct = {
  name: "Gadget",
  price: { currency: "INR", minorUnits: 1000n },
  category: "test",
};
const grpcReceipt = { productId: "$p1", warehouseId: "$w1", quantity: 5n };
const grpcAdjustment = { productId: "$p1", warehouseId: "$w1", delta: -1n, reason: 2 };
const manyRequests = (n: number) => Array.from({ length: n }, () => ({ lines: [grpcLine()] }));

const grpcRows: GrpcCase[] = [
  catalog("createWarehouse", 'name ""', { ...grpcWarehouse, name: "" }),
  catalog("createWarehouse", 'lat "91° N"', { ...grpcWarehouse, lat: "91° N" }),
  catalog("createWarehouse", 'lat "12° E"', { ...grpcWarehouse, lat: "12° E" }),
  catalog("createWarehouse", 'lat "" (unset)', { ...grpcWarehouse, lat: "" }),
  catalog("createWarehouse", 'lat "-12° S"', { ...grpcWarehouse, lat: "-12° S" }),
  catalog("createWarehouse", 'long "abc"', { ...grpcWarehouse, long: "abc" }),
  catalog("getWarehouse", 'id ""', { id: "" }),
  catalog("getWarehouse", "unknown id", { id: unknownWarehouse }, MISSING, NOT_FOUND),
  catalog("listWarehouses", "page_size 101", { pageSize: 101 }),
  catalog("listWarehouses", 'cursor "garbage"', { cursor: "garbage" }),
  catalog("createProduct", "no price", { name: "Gadget", category: "test" }),
  catalog("createProduct", 'name ""', { ...grpcProduct, name: "" }),
  catalog("createProduct", "price 0", {
    ...grpcProduct,
    price: { currency: "INR", minorUnits: 0n },
  }),
  catalog("createProduct", "price -1", {
    ...grpcProduct,
    price: { currency: "INR", minorUnits: -1n },
  }),
  catalog("createProduct", "price 10^13+1 minor units", {
    ...grpcProduct,
    price: { currency: "INR", minorUnits: 10n ** 13n + 1n },
  }),
  catalog("createProduct", "price 2^63-1 minor units", {
    ...grpcProduct,
    price: { currency: "INR", minorUnits: int64Max },
  }),
  catalog("createProduct", 'currency "inr"', {
    ...grpcProduct,
    price: { currency: "inr", minorUnits: 1000n },
  }),
  catalog("createProduct", 'currency "ABC"', {
    ...grpcProduct,
    price: { currency: "ABC", minorUnits: 1000n },
  }),
  catalog("createProduct", 'currency ""', {
    ...grpcProduct,
    price: { currency: "", minorUnits: 1n },
  }),
  catalog("getProduct", 'id ""', { id: "" }),
  catalog("getProduct", "unknown id", { id: unknownProduct }, MISSING, NOT_FOUND),
  catalog("searchProducts", "keyword of 201 characters", { keyword: "k".repeat(201) }),
  catalog("searchProducts", "page_size 101", { pageSize: 101 }),
  catalog("searchProducts", 'cursor "garbage"', { cursor: "garbage" }),

  ...bigQuantities.map(([name, quantity]) =>
    inventory("receiveStock", name, { ...grpcReceipt, quantity }),
  ),
  inventory(
    "receiveStock",
    "unknown product",
    { ...grpcReceipt, productId: unknownProduct },
    MISSING,
    NOT_FOUND,
  ),
  inventory(
    "receiveStock",
    "unknown warehouse",
    { ...grpcReceipt, warehouseId: unknownWarehouse },
    MISSING,
    NOT_FOUND,
  ),
  inventory("receiveStock", 'product_id ""', { ...grpcReceipt, productId: "" }),
  inventory("receiveStock", 'warehouse_id ""', { ...grpcReceipt, warehouseId: "" }),
  inventory("adjustStock", "reason 0 (unspecified)", { ...grpcAdjustment, reason: 0 }),
  inventory("adjustStock", "reason 99", { ...grpcAdjustment, reason: 99 }),
  inventory("adjustStock", "delta 0", { ...grpcAdjustment, delta: 0n }),
  inventory("adjustStock", "delta 2^53+1", { ...grpcAdjustment, delta: 2n ** 53n + 1n }),
  inventory("adjustStock", "delta -2^63", { ...grpcAdjustment, delta: -(2n ** 63n) }),
  inventory(
    "adjustStock",
    "unknown product",
    { ...grpcAdjustment, productId: unknownProduct },
    MISSING,
    NOT_FOUND,
  ),
  inventory("getInventory", 'product_id ""', { productId: "" }),
  inventory("getInventory", "unknown product", { productId: unknownProduct }, MISSING, NOT_FOUND),

  reservations("reserve", "no lines", { lines: [] }),
  reservations("reserve", "101 lines", { lines: Array.from({ length: 101 }, () => grpcLine()) }),
  ...bigQuantities.map(([name, quantity]) =>
    reservations("reserve", name, { lines: [grpcLine({ quantity })] }),
  ),
  reservations(
    "reserve",
    "unknown product",
    { lines: [grpcLine({ productId: unknownProduct })] },
    MISSING,
    NOT_FOUND,
  ),
  reservations(
    "reserve",
    "unknown warehouse",
    { lines: [grpcLine({ warehouseId: unknownWarehouse })] },
    MISSING,
    NOT_FOUND,
  ),
  reservations("reserve", 'product_id ""', { lines: [grpcLine({ productId: "" })] }),
  reservations(
    "reserve",
    "more than there is",
    { lines: [grpcLine({ quantity: 1000n })] },
    PRECONDITION,
    "OUT_OF_STOCK",
  ),
  reservations("reserve", "hold_seconds 30 days + 1 s", {
    lines: [grpcLine()],
    holdSeconds: 30 * 24 * 3600 + 1,
  }),
  reservations("reserve", "hold_seconds 2^32-1", { lines: [grpcLine()], holdSeconds: 2 ** 32 - 1 }),
  reservations("reserve", "request_id of 129 characters", {
    lines: [grpcLine()],
    requestId: long129,
  }),
  reservations("reserve", 'request_id "clé"', { lines: [grpcLine()], requestId: "clé" }),
  reservations("reserve", "ship_to latitude 91", {
    lines: [grpcLine({ warehouseId: "" })],
    shipTo: { latitude: 91, longitude: 0 },
  }),
  reservations("reserve", "ship_to longitude -181", {
    lines: [grpcLine({ warehouseId: "" })],
    shipTo: { latitude: 0, longitude: -181 },
  }),
  reservations("reserve", "ship_to latitude NaN", {
    lines: [grpcLine({ warehouseId: "" })],
    shipTo: { latitude: Number.NaN, longitude: 0 },
  }),
  reservations("reserveBatch", "0 requests", { requests: [] }),
  reservations("reserveBatch", "10,001 requests", { requests: manyRequests(10_001) }),
  ...["", ...malformedHoldIds].flatMap((id) => [
    reservations("releaseReservation", `id "${id}"`, { id }),
    reservations("fulfilReservation", `id "${id}"`, { id }),
    reservations("getReservation", `id "${id}"`, { id }),
  ]),
  ...[unknownHold, "5"].flatMap((id) => [
    reservations("releaseReservation", `unknown id ${id}`, { id }, MISSING, "HOLD_NOT_FOUND"),
    reservations("fulfilReservation", `unknown id ${id}`, { id }, MISSING, "HOLD_NOT_FOUND"),
    reservations("getReservation", `unknown id ${id}`, { id }, MISSING, "HOLD_NOT_FOUND"),
  ]),
  reservations("fulfilReservation", "quantity -1", { id: "$hold", lines: [{ quantity: -1n }] }),
  reservations("fulfilReservation", "quantity 2^53+1", {
    id: "$hold",
    lines: [{ quantity: 2n ** 53n + 1n }],
  }),
  reservations("fulfilReservation", "quantity 3 of 2 held", {
    id: "$hold",
    lines: [{ quantity: 3n }],
  }),
  reservations("fulfilReservation", "2 lines for a hold of 1", {
    id: "$hold",
    lines: [{ quantity: 1n }, { quantity: 1n }],
  }),

  g(
    CartService,
    "setCartItem",
    "customerA",
    "quantity -1",
    { productId: "$p1", quantity: -1n },
    INVALID,
    BAD,
  ),
  g(
    CartService,
    "setCartItem",
    "customerA",
    "quantity 2^53+1",
    {
      productId: "$p1",
      quantity: 2n ** 53n + 1n,
    },
    INVALID,
    BAD,
  ),
  g(
    CartService,
    "setCartItem",
    "customerA",
    "quantity 1e10",
    { productId: "$p1", quantity: 10n ** 10n },
    INVALID,
    BAD,
  ),
  g(
    CartService,
    "setCartItem",
    "customerA",
    'product_id ""',
    { productId: "", quantity: 1n },
    INVALID,
    BAD,
  ),
  g(
    CartService,
    "setCartItem",
    "customerA",
    "unknown product",
    { productId: unknownProduct, quantity: 1n },
    MISSING,
    NOT_FOUND,
  ),
  g(
    CartService,
    "setCartItem",
    "customerA",
    "a USD product in an INR cart",
    { productId: "$pUsd", quantity: 1n },
    PRECONDITION,
    "CURRENCY_MISMATCH",
  ),

  g(OrderService, "checkout", "customerA", 'cart_id ""', { cartId: "" }, INVALID, BAD),
  g(
    OrderService,
    "checkout",
    "customerA",
    "another customer's cart",
    { cartId: "$cartB" },
    MISSING,
    NOT_FOUND,
  ),
  g(
    OrderService,
    "checkout",
    "customerC",
    "an empty cart",
    { cartId: "$cartC" },
    PRECONDITION,
    "CART_EMPTY",
  ),
  g(
    OrderService,
    "checkout",
    "customerA",
    "ship_to latitude 91",
    {
      cartId: "$cartA",
      shipTo: { latitude: 91, longitude: 77 },
    },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "checkout",
    "customerA",
    "request_id of 129 characters",
    { cartId: "$cartA", requestId: long129 },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "checkout",
    "customerA",
    'request_id "clé"',
    { cartId: "$cartA", requestId: "clé" },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "recordPayment",
    "service",
    "status 0 (unspecified)",
    { orderId: "$order", status: 0, paymentId: "pay-1" },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "recordPayment",
    "service",
    "status 99",
    { orderId: "$order", status: 99, paymentId: "pay-1" },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "recordPayment",
    "service",
    'payment_id ""',
    { orderId: "$order", status: 1, paymentId: "" },
    INVALID,
    BAD,
  ),
  g(
    OrderService,
    "recordPayment",
    "service",
    "unknown order",
    { orderId: unknownOrder, status: 2, paymentId: "pay-1" },
    MISSING,
    NOT_FOUND,
  ),
  g(
    OrderService,
    "recordPayment",
    "service",
    'order_id ""',
    { orderId: "", status: 2, paymentId: "pay-1" },
    INVALID,
    BAD,
  ),
  g(OrderService, "getOrder", "admin", 'id ""', { id: "" }, INVALID, BAD),
  g(OrderService, "getOrder", "admin", "unknown order", { id: unknownOrder }, MISSING, NOT_FOUND),
  g(
    OrderService,
    "getOrder",
    "customerA",
    "another customer's order",
    { id: "$order" },
    MISSING,
    NOT_FOUND,
  ),
  g(OrderService, "cancelOrder", "admin", 'id ""', { id: "" }, INVALID, BAD),
  g(
    OrderService,
    "cancelOrder",
    "admin",
    "unknown order",
    { id: unknownOrder },
    MISSING,
    NOT_FOUND,
  ),
  g(
    OrderService,
    "cancelOrder",
    "customerA",
    "another customer's order",
    { id: "$order" },
    MISSING,
    NOT_FOUND,
  ),
];

// ---- last: rows that would leave a broken state if wrongly accepted -------------------

// Customer D's and E's carts are empty. One Yacht line is 900 x 10^13 =
// 9 x 10^15 minor units, just under 2^53; with 18% tax the cart's total is
// 1.062 x 10^16, past 2^53: no exact amount. Checkout refuses such a total;
// adding the item must be refused too, or the cart can no longer be shown.
const lastHttpRows: HttpCase[] = [
  cartItem(
    "a line whose total with tax passes 2^53 minor units",
    { productId: "$pBig", quantity: 900 },
    400,
    BAD,
    "customerD",
  ),
  row(
    "service",
    "POST",
    "/v1/reservations/$hold2/fulfil",
    "quantities [] for a hold of 1 line",
    { quantities: [] },
    400,
    BAD,
  ),
];
const lastGrpcRows: GrpcCase[] = [
  g(
    CartService,
    "setCartItem",
    "customerE",
    "a line whose total with tax passes 2^53 minor units",
    { productId: "$pBig", quantity: 900n },
    INVALID,
    BAD,
  ),
];
const lastRows = [...lastHttpRows, ...lastGrpcRows];

/** Each result of a ReserveBatch: its error code, or "ok". */
function batchCodes(res: { results?: { result: { case: string; value: { code: string } } }[] }) {
  return res.results?.map((x) => (x.result.case === "error" ? x.result.value.code : x.result.case));
}

// ---- running them -----------------------------------------------------------------

/** `$key` in every string of a value replaced by the context's id. */
function fill<T>(value: T, c: Ctx): T {
  const ids = c as unknown as Record<string, string>;
  if (typeof value === "string") {
    return value.replace(/\$(\w+)/g, (m, k: string) => ids[k] ?? m) as T;
  }
  if (Array.isArray(value)) return value.map((v) => fill(v, c)) as T;
  if (value instanceof Raw) return new Raw(fill(value.text, c), value.contentType) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, c)])) as T;
  }
  return value;
}

const show = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x))?.slice(0, 400);

describe("bad input: every refusal has its status and changes nothing", () => {
  let h: Harness;
  let c: Ctx;
  let tokens: Record<Exclude<Caller, "none">, string>;
  let clients: Record<Caller, GrpcClient>;
  /** What a client could read before any bad request. */
  let before: unknown;
  /** What it read after the previous row. */
  let current: unknown;

  beforeAll(async () => {
    h = await startServer();
    const s = await seed(h, {
      warehouses: [
        { name: "Bengaluru", lat: "12.9716° N", long: "77.5946° E" },
        { name: "Mumbai", lat: "19.0760° N", long: "72.8777° E" },
      ],
      products: [
        { name: "Widget", price: 100, currency: "INR" },
        { name: "Gizmo", price: 250.5, currency: "INR" },
        { name: "Gadget", price: 10, currency: "USD" },
        { name: "Yacht", price: 100_000_000_000, currency: "INR" },
      ],
    });
    const [w1, w2] = s.warehouses as [string, string];
    const [p1, p2, pUsd, pBig] = s.products as [string, string, string, string];
    tokens = {
      admin: s.admin,
      service: await h.token("svc-1", "service"),
      customerA: await h.token("customer-a", "customer"),
      customerB: await h.token("customer-b", "customer"),
      customerC: await h.token("customer-c", "customer"),
      customerD: await h.token("customer-d", "customer"),
      customerE: await h.token("customer-e", "customer"),
    };
    const ok = async (p: Promise<{ status: number; body: unknown }>, status = 200) => {
      const r = await p;
      if (r.status !== status) throw new Error(`seeding: ${r.status} ${show(r.body)}`);
      return r.body as Record<string, unknown> & { id: string };
    };
    for (const [p, w, quantity] of [
      [p1, w1, 50],
      [p1, w2, 30],
      [p2, w1, 20],
      [pUsd, w2, 10],
      [pBig, w1, 5],
    ] as const) {
      await ok(
        h.http.post("/v1/inventory/receipts", tokens.admin, {
          productId: p,
          warehouseId: w,
          quantity,
        }),
      );
    }
    const hold = await ok(
      h.http.post("/v1/reservations", tokens.service, {
        lines: [{ productId: p1, warehouseId: w1, quantity: 2 }],
        holdSeconds: 3600,
      }),
      201,
    );
    const hold2 = await ok(
      h.http.post("/v1/reservations", tokens.service, {
        lines: [{ productId: p2, warehouseId: w1, quantity: 1 }],
        holdSeconds: 3600,
      }),
      201,
    );
    await ok(h.http.post("/v1/cart/items", tokens.customerA, { productId: p1, quantity: 2 }));
    const cartA = await ok(
      h.http.post("/v1/cart/items", tokens.customerA, { productId: p2, quantity: 1 }),
    );
    const cartB = await ok(
      h.http.post("/v1/cart/items", tokens.customerB, { productId: p2, quantity: 1 }),
    );
    const order = await ok(h.http.post(`/v1/checkout?cartId=${cartB.id}`, tokens.customerB), 201);
    const cartC = await ok(h.http.get("/v1/cart/items", tokens.customerC));
    const productPage = await ok(h.http.get("/v1/products?pageSize=1", tokens.admin));
    const warehousePage = await ok(h.http.get("/v1/warehouses?pageSize=1", tokens.admin));
    c = {
      w1,
      w2,
      p1,
      p2,
      pUsd,
      pBig,
      hold: hold.id,
      hold2: hold2.id,
      order: order.id,
      orderHold: order.reservationId as string,
      cartA: cartA.id,
      cartB: cartB.id,
      cartC: cartC.id,
      productCursor: productPage.nextCursor as string,
      warehouseCursor: warehousePage.nextCursor as string,
    };
    expect(c.productCursor).toBeTypeOf("string");
    expect(c.warehouseCursor).toBeTypeOf("string");
    const port = () => h.server.grpcPort;
    clients = {
      admin: new GrpcClient(port, tokens.admin),
      service: new GrpcClient(port, tokens.service),
      customerA: new GrpcClient(port, tokens.customerA),
      customerB: new GrpcClient(port, tokens.customerB),
      customerC: new GrpcClient(port, tokens.customerC),
      customerD: new GrpcClient(port, tokens.customerD),
      customerE: new GrpcClient(port, tokens.customerE),
      none: new GrpcClient(port, undefined),
    };
    before = await snapshot();
    current = before;
  });
  afterAll(async () => {
    for (const client of Object.values(clients ?? {})) client.close();
    await h?.stop();
  });

  /** Everything observable of the seeded state, read over HTTP. */
  async function snapshot() {
    // A failed read is recorded, not thrown: the snapshot then differs, and
    // no request is left in flight when a test ends.
    const read = async (path: string, token: string): Promise<unknown> => {
      const r = await h.http.get(path, token);
      return r.status === 200 ? r.body : { readFailed: path, status: r.status, body: r.body };
    };
    const products = [c.p1, c.p2, c.pUsd, c.pBig];
    const warehouses = [c.w1, c.w2];
    const [order, inventory, product, warehouse, lists, carts, holds] = await Promise.all([
      read(`/v1/orders/${c.order}`, tokens.admin),
      Promise.all(products.map((p) => read(`/v1/inventory/${p}`, tokens.admin))),
      Promise.all(products.map((p) => read(`/v1/products/${p}`, tokens.admin))),
      Promise.all(warehouses.map((w) => read(`/v1/warehouses/${w}`, tokens.admin))),
      Promise.all([
        read("/v1/warehouses?pageSize=100", tokens.admin),
        read("/v1/products?pageSize=100", tokens.admin),
      ]),
      Promise.all(
        [
          tokens.customerA,
          tokens.customerB,
          tokens.customerC,
          tokens.customerD,
          tokens.customerE,
        ].map((t) => read("/v1/cart/items", t)),
      ),
      Promise.all(
        [c.hold, c.hold2, c.orderHold].map((id) => read(`/v1/reservations/${id}`, tokens.service)),
      ),
    ]);
    return { inventory, product, warehouse, lists, carts, order, holds };
  }

  /** The row changed nothing a client can read. */
  async function unchanged(name: string) {
    const now = await snapshot();
    const was = current;
    current = now;
    expect(now, `${name} changed the data`).toEqual(was);
  }

  it("the seeded state is what the tables assume", () => {
    expect(show(before)).not.toContain("readFailed");
    const s = before as {
      inventory: { available: number; reserved: number }[];
      carts: { id: string; items: unknown[]; pendingOrderId?: string }[];
      order: { status: string; userId: string };
      holds: { status: string }[];
    };
    expect(s.inventory.map((l) => [l.available, l.reserved])).toEqual([
      [78, 2],
      [18, 2],
      [10, 0],
      [5, 0],
    ]);
    expect(s.carts.map((x) => x.items.length)).toEqual([2, 1, 0, 0, 0]);
    expect(s.carts[1]!.pendingOrderId).toBe(c.order);
    expect(s.order).toMatchObject({ status: "PENDING_PAYMENT", userId: "customer-b" });
    expect(s.holds.map((x) => x.status)).toEqual(["OPEN", "OPEN", "OPEN"]);
    expect(httpRows.length + grpcRows.length + lastRows.length).toBeGreaterThan(300);
    const names = [...httpRows, ...grpcRows, ...lastRows].map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });

  async function sendHttp(row: HttpCase) {
    const body = fill(row.body, c);
    const headers = { ...row.headers };
    if (body instanceof Raw) headers["content-type"] = body.contentType;
    const r = await h.http.call(row.method, fill(row.path, c), {
      ...(row.as === "none" ? {} : { token: tokens[row.as] }),
      ...(body instanceof Raw ? { raw: body.text } : body === undefined ? {} : { body }),
      headers,
    });
    const answer = `answered ${r.status} ${show(r.body)}`;
    expect({ status: r.status, code: r.body?.error?.code }, answer).toEqual({
      status: row.status,
      code: row.code,
    });
    // The one error shape: {"error":{"code","message","details"}}.
    expect(Object.keys(r.body), answer).toEqual(["error"]);
    expect(Object.keys(r.body.error).sort(), answer).toEqual(["code", "details", "message"]);
    expect(r.body.error.message, answer).toBeTypeOf("string");
    expect(r.body.error.message.trim(), answer).not.toBe("");
    expect(r.body.error.details, answer).toBeTypeOf("object");
    expect(Array.isArray(r.body.error.details) || r.body.error.details === null, answer).toBe(
      false,
    );
    await unchanged(row.name);
  }

  async function sendGrpc(row: GrpcCase) {
    const client = clients[row.as];
    const failure = await client.call(row.service, row.method, fill(row.request, c)).then(
      (res: unknown): GrpcFailure => {
        throw new Error(`the call succeeded: ${show(res)}`);
      },
      (e: GrpcFailure) => e,
    );
    const answer = `answered ${GrpcStatus[failure.code]} ${show(failure)}`;
    expect({ code: GrpcStatus[failure.code], reason: failure.reason }, answer).toEqual({
      code: GrpcStatus[row.code],
      reason: row.reason,
    });
    expect(failure.message.trim(), answer).not.toBe("");
    await unchanged(row.name);
  }

  for (const row of httpRows) {
    it(`HTTP ${row.name} -> ${row.status} ${row.code}`, () => sendHttp(row));
  }
  for (const row of grpcRows) {
    it(`gRPC ${row.name} -> ${GrpcStatus[row.code]} ${row.reason}`, () => sendGrpc(row));
  }

  // POST /v1/reservations has a fast path beside its Fastify route
  // (reserveFastPath in src/gateway/http.ts); a query string sends the same
  // request through the route. Both must give the same answer.
  const parityRows: HttpCase[] = [
    ...reservationRows,
    { ...reserve("no token", reserveOk, 401, "UNAUTHENTICATED"), as: "none" },
    { ...reserve("a customer's token", reserveOk, 403, "PERMISSION_DENIED"), as: "customerA" },
    reserve("a forged token", reserveOk, 401, "UNAUTHENTICATED", {
      authorization: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.c2lnbmF0dXJl",
    }),
  ];
  for (const row of parityRows) {
    it(`HTTP POST /v1/reservations, fast path and route answer alike: ${row.name.split(": ")[1]}`, async () => {
      const fast = await answerOf(row, "/v1/reservations");
      const routed = await answerOf(row, "/v1/reservations?through=route");
      expect(fast, `route answered ${show(routed)}`).toEqual(routed);
      expect({ status: fast.status, code: fast.body?.error?.code }).toEqual({
        status: row.status,
        code: row.code,
      });
      await unchanged(row.name);
    });
  }

  async function answerOf(row: HttpCase, path: string) {
    const body = fill(row.body, c);
    const headers = { ...row.headers };
    if (body instanceof Raw) headers["content-type"] = body.contentType;
    const r = await h.http.call(row.method, path, {
      ...(row.as === "none" || headers.authorization !== undefined
        ? {}
        : { token: tokens[row.as] }),
      ...(body instanceof Raw ? { raw: body.text } : body === undefined ? {} : { body }),
      headers,
    });
    return { status: r.status, body: r.body, contentType: r.headers.get("content-type") };
  }

  it("gRPC: a batch answers each bad request on its own and holds nothing for them", async () => {
    const requests = [
      { lines: [] },
      { lines: [grpcLine({ quantity: 0n })] },
      { lines: [grpcLine({ quantity: 2n ** 53n + 1n })] },
      { lines: [grpcLine({ productId: unknownProduct })] },
      { lines: [grpcLine({ quantity: 1000n })] },
      { lines: [grpcLine({ warehouseId: unknownWarehouse })] },
    ];
    const res = await clients.service.call(ReservationService, "reserveBatch", {
      requests: fill(requests, c),
    });
    expect(batchCodes(res)).toEqual([BAD, BAD, BAD, NOT_FOUND, "OUT_OF_STOCK", NOT_FOUND]);
    await unchanged("the batch of bad requests");
  });

  it("gRPC: a batch with one bad ship_to answers that one INVALID_ARGUMENT, the others on their own", async () => {
    const requests = [
      { lines: [grpcLine({ quantity: 0n })] },
      { lines: [grpcLine({ warehouseId: "" })], shipTo: { latitude: 91, longitude: 0 } },
      { lines: [grpcLine({ quantity: 1000n })] },
    ];
    const res = await clients.service
      .call(ReservationService, "reserveBatch", { requests: fill(requests, c) })
      .catch((e: GrpcFailure) => ({ failed: e }));
    expect(batchCodes(res), `answered ${show(res)}`).toEqual([BAD, BAD, "OUT_OF_STOCK"]);
    await unchanged("the batch with a bad ship_to");
  });

  // Rows that, wrongly accepted, leave a state that later reads cannot
  // serve: they run last, each on a cart of its own.
  for (const row of lastHttpRows) {
    it(`HTTP ${row.name} -> ${row.status} ${row.code}`, () => sendHttp(row));
  }
  for (const row of lastGrpcRows) {
    it(`gRPC ${row.name} -> ${GrpcStatus[row.code]} ${row.reason}`, () => sendGrpc(row));
  }

  it("the data is unchanged after all of them", async () => {
    expect(await snapshot()).toEqual(before);
  });
});
