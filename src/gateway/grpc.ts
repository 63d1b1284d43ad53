import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { anyPack, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import type { Logger } from "pino";
import type { AdjustmentReason } from "../engine/index.ts";
import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import {
  type AdjustStockRequest,
  type CancelOrderRequest,
  CartSchema,
  CartService,
  CatalogService,
  type CheckoutRequest,
  type CreateProductRequest,
  type CreateWarehouseRequest,
  type FulfilReservationRequest,
  file_stockd_v1_api,
  type GetInventoryRequest,
  type GetOrderRequest,
  type GetProductRequest,
  type GetReservationRequest,
  type GetWarehouseRequest,
  InventoryService,
  type ListWarehousesRequest,
  type Location,
  MoneySchema,
  OrderSchema,
  OrderService,
  OrderStatus,
  PaymentStatus,
  ProductSchema,
  type ReceiveStockRequest,
  type RecordPaymentRequest,
  type ReleaseReservationRequest,
  type ReservationSchema,
  ReservationService,
  ReservationStatus,
  type SearchProductsRequest,
  type SetCartItemRequest,
  StockLevelSchema,
  WarehouseSchema,
} from "../gen/stockd/v1/api_pb.ts";
import { UnavailableError } from "../persistence/index.ts";
import type { Principal } from "./auth.ts";
import type { Product, Warehouse } from "./catalog.ts";
import {
  decodeReserveBatchRequest,
  decodeReserveRequest,
  encodeReserveBatchResponse,
  encodeReserveResponse,
  isMalformed,
  type Malformed,
} from "./codec.ts";
import { ApiCode, ApiError, invalid } from "./errors.ts";
import { gatewayLimits } from "./limits.ts";
import type { Metrics } from "./metrics.ts";
import type { CartView, Order } from "./orders.ts";
import { Operation, type Service } from "./service.ts";
import type { Level, ReservationOut, ReserveInput } from "./stock.ts";

// The gRPC transport: grpc-js serving the services of proto/stockd/v1 with
// messages from protobuf-es. protobuf-es makes no grpc-js stubs, so
// `serviceDefinition` builds grpc-js's definition from the generated
// descriptor (toBinary/fromBinary as the serializers), in this one place.

/** A method's codec written by hand (src/gateway/codec.ts), in place of
 * protobuf-es's, for the hot path. */
export interface MethodCodec {
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (value: never) => Buffer;
}

/** A grpc-js service definition for a protobuf-es service descriptor. */
export function serviceDefinition(
  service: DescService,
  codecs: Record<string, MethodCodec> = {},
): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    const codec = codecs[m.localName];
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      originalName: m.name,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: serializer(m.input) as (m: unknown) => Buffer,
      requestDeserialize: codec?.requestDeserialize ?? deserializer(m.input),
      responseSerialize: (codec?.responseSerialize ?? serializer(m.output)) as (
        m: unknown,
      ) => Buffer,
      responseDeserialize: deserializer(m.output),
    };
  }
  return def as grpc.ServiceDefinition;
}

function serializer<D extends DescMessage>(desc: D) {
  // Handlers may answer with an init shape (plain object): made a message here.
  return (msg: MessageShape<D> | MessageInitShape<D>): Buffer => {
    const m = (msg as { $typeName?: string }).$typeName === undefined ? create(desc, msg) : msg;
    const bytes = toBinary(desc, m as MessageShape<D>);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(desc: D) {
  return (buf: Buffer): MessageShape<D> => fromBinary(desc, buf);
}

export interface GrpcOptions {
  logger: Logger;
  metrics: Metrics;
  service: () => Service | null;
}

export interface GrpcServer {
  server: grpc.Server;
  health: HealthImplementation;
}

export function buildGrpc(options: GrpcOptions): GrpcServer {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": gatewayLimits.grpcMessageBytesMax,
    "grpc.max_send_message_length": gatewayLimits.grpcMessageBytesMax,
  });
  const h = new Handlers(options);
  server.addService(serviceDefinition(CatalogService), h.catalog());
  server.addService(serviceDefinition(InventoryService), h.inventory());
  server.addService(serviceDefinition(ReservationService, reserveCodecs), h.reservations());
  server.addService(serviceDefinition(CartService), h.carts());
  server.addService(serviceDefinition(OrderService), h.orders());
  const health = new HealthImplementation({ "": "NOT_SERVING" });
  health.addToServer(server);
  reflection().addToServer(server);
  return { server, health };
}

/** Server reflection (for grpcurl without proto files), from the same
 * descriptors protobuf-es generated: the reflection package reads the
 * serialized FileDescriptorProtos of each file. */
function reflection(): ReflectionService {
  const files = [file_stockd_v1_api, ...file_stockd_v1_api.dependencies];
  const fileDescriptorProtos = files.map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
  const services = [
    CatalogService,
    InventoryService,
    ReservationService,
    CartService,
    OrderService,
  ];
  // The health service's descriptors come from its own package's proto file.
  const pkg = {
    ...loadSync(healthProtoPath),
    ...Object.fromEntries(services.map((s) => [s.typeName, { fileDescriptorProtos }])),
  };
  return new ReflectionService(
    pkg as unknown as ConstructorParameters<typeof ReflectionService>[0],
  );
}

const reserveCodecs: Record<string, MethodCodec> = {
  reserve: { requestDeserialize: decodeReserveRequest, responseSerialize: encodeReserveResponse },
  reserveBatch: {
    requestDeserialize: decodeReserveBatchRequest,
    responseSerialize: encodeReserveBatchResponse,
  },
};

// biome-ignore lint/suspicious/noExplicitAny: grpc-js's untyped service implementation
type Unary = grpc.handleUnaryCall<any, any>;

class Handlers {
  constructor(private readonly o: GrpcOptions) {}

  /** Authenticates, runs, answers and measures one unary call. */
  private unary<Req>(op: Operation, fn: (s: Service, p: Principal, req: Req) => unknown): Unary {
    return (call: grpc.ServerUnaryCall<Req, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const start = performance.now();
      const done = (code: string) =>
        this.o.metrics.observe("grpc", op, code, (performance.now() - start) / 1000);
      const s = this.o.service();
      if (s === null) {
        const e = new ApiError(ApiCode.Unavailable, "stockd is starting: recovering");
        callback(serviceError(e));
        done(e.code);
        return;
      }
      const header = call.metadata.get("authorization")[0];
      s.caller(typeof header === "string" ? header : undefined, op)
        .then((p) => fn(s, p, call.request))
        .then(
          (res) => {
            callback(null, res);
            done("OK");
          },
          (err: unknown) => {
            const e = asApiError(err, this.o.logger);
            if (op === Operation.Reserve) this.o.metrics.reservation(e.code);
            callback(serviceError(e));
            done(e.code);
          },
        );
    };
  }

  catalog(): grpc.UntypedServiceImplementation {
    return {
      createWarehouse: this.unary(
        Operation.CreateWarehouse,
        async (s, _p, r: CreateWarehouseRequest) => ({
          warehouse: warehouseMsg(
            await s.createWarehouse({ name: r.name, address: r.address, lat: r.lat, long: r.long }),
          ),
        }),
      ),
      getWarehouse: this.unary(Operation.GetWarehouse, (s, _p, r: GetWarehouseRequest) => ({
        warehouse: warehouseMsg(s.getWarehouse(r.id)),
      })),
      listWarehouses: this.unary(Operation.ListWarehouses, (s, _p, r: ListWarehousesRequest) => {
        const page = s.listWarehouses(r.cursor || undefined, r.pageSize);
        return { warehouses: page.items.map(warehouseMsg), nextCursor: page.nextCursor ?? "" };
      }),
      createProduct: this.unary(
        Operation.CreateProduct,
        async (s, _p, r: CreateProductRequest) => ({
          product: productMsg(
            await s.createProduct({
              name: r.name,
              description: r.description,
              priceMinor: int(r.price?.minorUnits ?? 0n),
              currency: r.price?.currency ?? "",
              category: r.category,
            }),
          ),
        }),
      ),
      getProduct: this.unary(Operation.GetProduct, (s, _p, r: GetProductRequest) => ({
        product: productMsg(s.getProduct(r.id)),
      })),
      searchProducts: this.unary(Operation.SearchProducts, (s, _p, r: SearchProductsRequest) => {
        const page = s.searchProducts(r.keyword, r.cursor || undefined, r.pageSize);
        return { products: page.items.map(productMsg), nextCursor: page.nextCursor ?? "" };
      }),
    };
  }

  inventory(): grpc.UntypedServiceImplementation {
    return {
      receiveStock: this.unary(Operation.ReceiveStock, async (s, _p, r: ReceiveStockRequest) => ({
        level: levelMsg(await s.receiveStock(r.productId, r.warehouseId, int(r.quantity))),
      })),
      adjustStock: this.unary(Operation.AdjustStock, async (s, _p, r: AdjustStockRequest) => {
        if (!(r.reason >= 1 && r.reason <= 5)) {
          throw invalid("reason must be one of the AdjustmentReason values", { field: "reason" });
        }
        const level = await s.adjustStock(
          r.productId,
          r.warehouseId,
          int(r.delta),
          r.reason as AdjustmentReason,
        );
        return { level: levelMsg(level) };
      }),
      getInventory: this.unary(Operation.GetInventory, async (s, _p, r: GetInventoryRequest) => ({
        productId: r.productId,
        levels: (await s.inventory(r.productId)).map(levelMsg),
      })),
    };
  }

  reservations(): grpc.UntypedServiceImplementation {
    return {
      reserve: this.unary(Operation.Reserve, async (s, _p, r: ReserveInput | Malformed) => {
        if (isMalformed(r)) throw invalid(r.malformed);
        const out = await s.reserve(r);
        this.o.metrics.reservation("HELD");
        return out;
      }),
      reserveBatch: this.unary(
        Operation.ReserveBatch,
        async (s, _p, r: ReserveInput[] | Malformed) => {
          if (isMalformed(r)) throw invalid(r.malformed);
          const results = await s.reserveBatch(r);
          let held = 0;
          for (const x of results) {
            if (x instanceof ApiError) this.o.metrics.reservation(x.code);
            else held++;
          }
          this.o.metrics.reservation("HELD", held);
          return results;
        },
      ),
      releaseReservation: this.unary(
        Operation.ReleaseReservation,
        async (s, _p, r: ReleaseReservationRequest) => ({
          reservation: reservationMsg(await s.release(r.id)),
        }),
      ),
      fulfilReservation: this.unary(
        Operation.FulfilReservation,
        async (s, _p, r: FulfilReservationRequest) => {
          const quantities = r.lines.map((l) => int(l.quantity));
          return { reservation: reservationMsg(await s.fulfil(r.id, quantities)) };
        },
      ),
      getReservation: this.unary(
        Operation.GetReservation,
        async (s, _p, r: GetReservationRequest) => ({
          reservation: reservationMsg(await s.reservation(r.id)),
        }),
      ),
    };
  }

  carts(): grpc.UntypedServiceImplementation {
    return {
      setCartItem: this.unary(Operation.SetCartItem, async (s, p, r: SetCartItemRequest) => ({
        cart: cartMsg(await s.setCartItem(p, r.productId, int(r.quantity))),
      })),
      getCart: this.unary(Operation.GetCart, (s, p) => ({ cart: cartMsg(s.cart(p)) })),
    };
  }

  orders(): grpc.UntypedServiceImplementation {
    return {
      checkout: this.unary(Operation.Checkout, async (s, p, r: CheckoutRequest) => {
        const out = await s.checkout(p, r.cartId, r.requestId, place(r.shipTo));
        return { order: orderMsg(out.order) };
      }),
      recordPayment: this.unary(Operation.RecordPayment, async (s, _p, r: RecordPaymentRequest) => {
        if (r.status !== PaymentStatus.SUCCEEDED && r.status !== PaymentStatus.FAILED) {
          throw invalid("status must be SUCCEEDED or FAILED", { field: "status" });
        }
        const o = await s.recordPayment(
          r.orderId,
          r.status === PaymentStatus.SUCCEEDED,
          r.paymentId,
        );
        return { order: orderMsg(o) };
      }),
      getOrder: this.unary(Operation.GetOrder, (s, p, r: GetOrderRequest) => ({
        order: orderMsg(s.order(p, r.id)),
      })),
      cancelOrder: this.unary(Operation.CancelOrder, async (s, p, r: CancelOrderRequest) => ({
        order: orderMsg(await s.cancel(p, r.id)),
      })),
    };
  }
}

/** A proto Location as a place (checked by the service layer). */
function place(l: Location | undefined): { latitude: number; longitude: number } | undefined {
  return l === undefined ? undefined : { latitude: l.latitude, longitude: l.longitude };
}

/** An int64 as a number; beyond 2^53 it becomes NaN, which every bound
 * check refuses. */
function int(b: bigint): number {
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : Number.NaN;
}

function money(minor: number, currency: string) {
  return create(MoneySchema, { currency, minorUnits: BigInt(minor) });
}

function warehouseMsg(w: Warehouse) {
  return create(WarehouseSchema, {
    id: w.id,
    name: w.name,
    address: w.address,
    location: { latitude: w.latitude, longitude: w.longitude },
    createTimeMs: BigInt(w.createTimeMs),
  });
}

function productMsg(p: Product) {
  return create(ProductSchema, {
    id: p.id,
    name: p.name,
    description: p.description,
    price: money(p.priceMinor, p.currency),
    category: p.category,
    createTimeMs: BigInt(p.createTimeMs),
  });
}

function levelMsg(l: Level) {
  return create(StockLevelSchema, {
    productId: l.productId,
    warehouseId: l.warehouseId,
    available: BigInt(l.available),
    reserved: BigInt(l.reserved),
  });
}

const reservationStatus: Record<ReservationOut["status"], ReservationStatus> = {
  OPEN: ReservationStatus.OPEN,
  RELEASED: ReservationStatus.RELEASED,
  EXPIRED: ReservationStatus.EXPIRED,
  FULFILLED: ReservationStatus.FULFILLED,
  ABORTED: ReservationStatus.ABORTED,
};

function reservationMsg(r: ReservationOut): MessageInitShape<typeof ReservationSchema> {
  return {
    id: String(r.holdId),
    status: reservationStatus[r.status],
    lines: r.lines.map((l) => ({
      productId: l.productId,
      warehouseId: l.warehouseId,
      quantity: BigInt(l.quantity),
    })),
    expireTimeMs: BigInt(r.expireTimeMs),
  };
}

function cartMsg(c: CartView) {
  return create(CartSchema, {
    id: c.id,
    userId: c.userId,
    items: c.items.map((i) => ({
      productId: i.productId,
      name: i.name,
      quantity: BigInt(i.quantity),
      pricePerUnit: money(i.priceMinor, c.currency),
      lineItemTotal: money(i.totalMinor, c.currency),
    })),
    subtotal: money(c.subtotalMinor, c.currency),
    tax: money(c.taxMinor, c.currency),
    total: money(c.totalMinor, c.currency),
    pendingOrderId: c.pendingOrderId,
  });
}

const orderStatus: Record<Order["status"], OrderStatus> = {
  RESERVING: OrderStatus.UNSPECIFIED,
  PENDING_PAYMENT: OrderStatus.PENDING_PAYMENT,
  PAID: OrderStatus.PAID,
  EXPIRED: OrderStatus.EXPIRED,
  CANCELLED: OrderStatus.CANCELLED,
};

function orderMsg(o: Order) {
  return create(OrderSchema, {
    id: o.id,
    userId: o.userId,
    cartId: o.cartId,
    status: orderStatus[o.status],
    lines: o.lines.map((l) => ({
      productId: l.productId,
      name: l.name,
      warehouseId: l.warehouseId,
      quantity: BigInt(l.quantity),
      pricePerUnit: money(l.priceMinor, o.currency),
      lineItemTotal: money(l.totalMinor, o.currency),
    })),
    subtotal: money(o.subtotalMinor, o.currency),
    tax: money(o.taxMinor, o.currency),
    total: money(o.totalMinor, o.currency),
    reservationId: String(o.holdId),
    reservedTillTimeMs: BigInt(o.reservedTillMs),
    paymentId: o.paymentId,
    failedPaymentCount: o.failedPaymentCount,
    createTimeMs: BigInt(o.createTimeMs),
    updateTimeMs: BigInt(o.updateTimeMs),
  });
}

function stringMap(details: Record<string, string | number>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(details)) out[k] = String(v);
  return out;
}

function asApiError(err: unknown, logger: Logger): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof UnavailableError) return new ApiError(ApiCode.Unavailable, err.message);
  logger.error({ err }, "grpc call failed");
  return new ApiError(ApiCode.Internal, "internal error");
}

/** The gRPC status for an ApiError, with a google.rpc.Status carrying an
 * ErrorInfo (reason = the code) in the `grpc-status-details-bin` trailer. */
export function serviceError(e: ApiError): Partial<grpc.StatusObject> & Error {
  const info = create(ErrorInfoSchema, {
    reason: e.code,
    domain: "stockd",
    metadata: stringMap(e.details),
  });
  const status = create(StatusSchema, {
    code: e.grpcStatus,
    message: e.message,
    details: [anyPack(ErrorInfoSchema, info)],
  });
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
  return Object.assign(new Error(e.message), { code: e.grpcStatus, details: e.message, metadata });
}
