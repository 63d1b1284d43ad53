// The checkout workload over either transport: a customer sets 3 random
// cart lines (one call each), checks out (every line reserved at once, an
// order PENDING_PAYMENT), and every other checkout is paid through the
// payment callback (service token) while the rest are left to expire at
// the hold's end (stockd's --hold-duration, 2 s here).
//
// A customer whose order was paid has an empty cart again and is reused; a
// customer whose order was left to expire (or whose session failed) is not:
// their cart is locked until the expiry and keeps its lines after it, so
// the next session takes a customer never seen before (a token signed for
// a new subject, a few ahead of need).

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CheckoutRequestSchema,
  CheckoutResponseSchema,
  PaymentStatus,
  RecordPaymentRequestSchema,
  SetCartItemRequestSchema,
  SetCartItemResponseSchema,
} from "../../src/gen/stockd/v1/api_pb.ts";
import { methodPaths } from "../lib/grpc_load.ts";
import { checkoutLineCount } from "../lib/scenario.ts";
import { LatencyHistogram } from "../lib/stats.ts";
import type { GrpcCaller, HttpAnswer, HttpPool } from "./callers.ts";
import { pickDistinct } from "./common.ts";
import { Phased, type PhasedOptions } from "./phased.ts";

/** What a step answered: "OK", an error code (OUT_OF_STOCK, ...), or
 * NO_ANSWER; `id` is the cart's or the order's. */
export interface Step {
  reason: string;
  id?: string;
}

/** The three calls of a checkout session on one transport. `customer` and
 * `service` are whole authorization values ("Bearer ..."). */
export interface CheckoutApi {
  setCartItem(customer: string, productId: string): Promise<Step>;
  checkout(customer: string, cartId: string): Promise<Step>;
  pay(service: string, orderId: string, paymentId: string): Promise<Step>;
}

// ---- gRPC --------------------------------------------------------------------------

/** `echoPath`: every call goes there and answers are not decoded. */
export function grpcCheckoutApi(caller: GrpcCaller, echoPath: string | null): CheckoutApi {
  const path = (p: string) => echoPath ?? p;
  return {
    async setCartItem(customer, productId) {
      const body = toBinary(
        SetCartItemRequestSchema,
        create(SetCartItemRequestSchema, { productId, quantity: 1n }),
      );
      const a = await caller.call(path(methodPaths.setCartItem), body, customer);
      if (a.code !== 0 || a.bytes === undefined) return { reason: a.reason };
      const id =
        echoPath !== null ? "echo" : fromBinary(SetCartItemResponseSchema, a.bytes).cart?.id;
      return id === undefined ? { reason: "NO_CART_ID" } : { reason: "OK", id };
    },
    async checkout(customer, cartId) {
      const body = toBinary(CheckoutRequestSchema, create(CheckoutRequestSchema, { cartId }));
      const a = await caller.call(path(methodPaths.checkout), body, customer);
      if (a.code !== 0 || a.bytes === undefined) return { reason: a.reason };
      const id = echoPath !== null ? "echo" : fromBinary(CheckoutResponseSchema, a.bytes).order?.id;
      return id === undefined ? { reason: "NO_ORDER_ID" } : { reason: "OK", id };
    },
    async pay(service, orderId, paymentId) {
      const body = toBinary(
        RecordPaymentRequestSchema,
        create(RecordPaymentRequestSchema, {
          orderId,
          status: PaymentStatus.SUCCEEDED,
          paymentId,
        }),
      );
      const a = await caller.call(path(methodPaths.recordPayment), body, service);
      return { reason: a.code === 0 ? "OK" : a.reason };
    },
  };
}

// ---- HTTP --------------------------------------------------------------------------

/** What an HTTP answer says: OK (2xx with an id), the error's code, or
 * NO_ANSWER. */
export function httpStep(a: HttpAnswer): Step {
  if (a.status === 0) return { reason: "NO_ANSWER" };
  let body: { id?: unknown; error?: { code?: unknown } } = {};
  try {
    body = JSON.parse(a.body) as typeof body;
  } catch {
    return { reason: `HTTP ${a.status}` };
  }
  if (a.status >= 200 && a.status <= 299) {
    return typeof body.id === "string" ? { reason: "OK", id: body.id } : { reason: "NO_ID" };
  }
  const code = body.error?.code;
  return { reason: typeof code === "string" ? code : `HTTP ${a.status}` };
}

/** Works against the echo HTTP server as it is: it answers every path with
 * 201 and an id. */
export function httpCheckoutApi(pool: HttpPool): CheckoutApi {
  return {
    async setCartItem(customer, productId) {
      const body = JSON.stringify({ productId, quantity: 1 });
      return httpStep(await pool.send(pool.request("POST", "/v1/cart/items", customer, body)));
    },
    async checkout(customer, cartId) {
      const path = `/v1/checkout?cartId=${encodeURIComponent(cartId)}`;
      return httpStep(await pool.send(pool.request("POST", path, customer)));
    },
    async pay(service, orderId, paymentId) {
      const path = `/v1/orders/${encodeURIComponent(orderId)}/payment`;
      const body = JSON.stringify({ status: "SUCCEEDED", paymentId });
      const step = httpStep(await pool.send(pool.request("POST", path, service, body)));
      return { reason: step.reason === "NO_ID" ? "OK" : step.reason };
    },
  };
}

// ---- the workload ---------------------------------------------------------------------

/** Fresh customers signed ahead of need, and topped up in the background
 * below this many. */
const customersAhead = 256;

export interface CheckoutOptions extends Omit<PhasedOptions, "onPhase"> {
  api: CheckoutApi;
  productIds: readonly string[];
  /** "Bearer <service token>" */
  service: string;
  /** A customer never seen before ("Bearer ..."). */
  newCustomer(): Promise<string>;
  /** A payment was recorded: one unit of each product is gone. */
  onPaid(productIds: readonly string[]): void;
  /** A payment got no answer: its units may or may not be gone. */
  onPaidMaybe(productIds: readonly string[]): void;
  onPhase(mark: "measure" | "drain"): void;
}

export interface CheckoutResult {
  elapsedMs: number;
  /** Orders created (Checkout OK) in the window. */
  checkouts: number;
  /** Checkouts refused for want of stock. */
  refused: number;
  /** Sessions that failed at any step, sends skipped by the open loop. */
  errors: number;
  paid: number;
  /** Orders deliberately left unpaid, to expire. */
  leftToExpire: number;
  /** "<step> <reason>" -> answers in the window. */
  byStep: Record<string, number>;
  /** The Checkout call alone. */
  checkoutLatency: LatencyHistogram;
  /** From the session's start (open loop: when it fell due) to the
   * Checkout answer: 3 cart lines and the checkout. */
  sessionLatency: LatencyHistogram;
  skipped: number;
  /** Sessions that threw; the first one's message. */
  failed: number;
  firstFailure: string | null;
}

export async function runCheckout(o: CheckoutOptions): Promise<CheckoutResult> {
  const reusable: string[] = [];
  const ahead: string[] = [];
  let refilling: Promise<void> | null = null;
  const refill = () => {
    refilling ??= (async () => {
      while (ahead.length < customersAhead + o.clients) ahead.push(await o.newCustomer());
    })().finally(() => {
      refilling = null;
    });
    return refilling;
  };
  await refill();
  const take = async () => {
    const c = reusable.pop() ?? ahead.pop();
    if (ahead.length < customersAhead) void refill();
    return c ?? (await o.newCustomer());
  };

  const r: CheckoutResult = {
    elapsedMs: 0,
    checkouts: 0,
    refused: 0,
    errors: 0,
    paid: 0,
    leftToExpire: 0,
    byStep: {},
    checkoutLatency: new LatencyHistogram(),
    sessionLatency: new LatencyHistogram(),
    skipped: 0,
    failed: 0,
    firstFailure: null,
  };
  const phased = new Phased(o);
  const count = (step: string, reason: string) => {
    if (!phased.measuring) return;
    const key = `${step} ${reason}`;
    r.byStep[key] = (r.byStep[key] ?? 0) + 1;
    if (reason !== "OK" && step !== "Checkout") r.errors++;
  };
  let seq = 0;

  const session = async (_slot: number, dueMs: number) => {
    const customer = await take();
    const products = pickDistinct(o.productIds, checkoutLineCount);
    let cartId = "";
    for (const productId of products) {
      const s = await o.api.setCartItem(customer, productId);
      count("SetCartItem", s.reason);
      if (s.reason !== "OK" || s.id === undefined) return;
      cartId = s.id;
    }
    const c0 = performance.now();
    const c = await o.api.checkout(customer, cartId);
    const doneMs = performance.now();
    count("Checkout", c.reason);
    if (phased.measuring) {
      if (c.reason === "OK") {
        r.checkouts++;
        r.checkoutLatency.recordMs(doneMs - c0);
        r.sessionLatency.recordMs(doneMs - dueMs);
      } else if (c.reason === "OUT_OF_STOCK" || c.reason === "INSUFFICIENT_STOCK") r.refused++;
      else r.errors++;
    }
    if (c.reason !== "OK" || c.id === undefined) return;
    if (++seq % 2 === 0) {
      if (phased.measuring) r.leftToExpire++;
      return;
    }
    const p = await o.api.pay(o.service, c.id, `bench-drivers-pay-${seq}-${c.id}`);
    count("RecordPayment", p.reason);
    if (p.reason === "OK") {
      o.onPaid(products);
      reusable.push(customer);
      if (phased.measuring) r.paid++;
    } else if (p.reason === "NO_ANSWER" || p.reason === "UNAVAILABLE") {
      o.onPaidMaybe(products);
    }
  };

  const { elapsedMs } = await phased.run(session);
  await refilling;
  return {
    ...r,
    elapsedMs,
    skipped: phased.skipped,
    failed: phased.failed,
    firstFailure: phased.firstFailure,
    errors: r.errors + phased.skipped + phased.failed,
  };
}
