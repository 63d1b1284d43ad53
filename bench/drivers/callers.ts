// Request/answer clients for the workloads that chain calls (checkout) or
// stop on an answer (contention), and for the evenly paced HTTP open loop:
// a grpc-js caller over several channels, and a keep-alive HTTP/1.1 pool on
// bare sockets (one request at a time per connection, answers framed by
// content-length), which costs the load generator less than node:http.

import { connect, type Socket } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  Client,
  credentials,
  status as grpcStatus,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { ErrorInfoSchema } from "../../src/gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../src/gen/google/rpc/status_pb.ts";
import { parseAnswer } from "../lib/http_answer.ts";

/** How long a channel or a socket may take to connect. */
const connectMsMax = 10_000;
/** Bytes in one gRPC answer. */
const messageBytesMax = 16 * 1024 * 1024;

// ---- gRPC ---------------------------------------------------------------------------

export interface GrpcAnswer {
  /** gRPC status code, 0 OK. */
  code: number;
  /** "OK", else the ErrorInfo reason stockd sends (OUT_OF_STOCK, ...), else
   * the gRPC code's name. */
  reason: string;
  details: string;
  bytes: Buffer | undefined;
}

const identity = (b: Buffer) => b;

function reasonOf(err: ServiceError): string {
  const raw = err.metadata?.get("grpc-status-details-bin")[0];
  if (raw instanceof Buffer) {
    try {
      const s = fromBinary(StatusSchema, raw);
      for (const d of s.details) {
        const info = anyUnpack(d, ErrorInfoSchema);
        if (info !== undefined && info.reason !== "") return info.reason;
      }
    } catch {
      // Not a google.rpc.Status: the code's name will do.
    }
  }
  return grpcStatus[err.code] ?? String(err.code);
}

export class GrpcCaller {
  private next = 0;
  /** grpc-js clones a call's metadata: one object per token will do. */
  private readonly metadata = new Map<string, Metadata>();

  private constructor(private readonly clients: Client[]) {}

  /** `channelCount` channels, each its own HTTP/2 connection. */
  static async open(address: string, channelCount: number): Promise<GrpcCaller> {
    const clients = Array.from(
      { length: channelCount },
      () =>
        new Client(address, credentials.createInsecure(), {
          "grpc.use_local_subchannel_pool": 1,
          "grpc.max_receive_message_length": messageBytesMax,
          "grpc.max_send_message_length": messageBytesMax,
        }),
    );
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve, reject) =>
            c.waitForReady(Date.now() + connectMsMax, (err) => (err ? reject(err) : resolve())),
          ),
      ),
    );
    return new GrpcCaller(clients);
  }

  /** `authorization`: the whole header value, "Bearer ...". */
  call(path: string, body: Uint8Array, authorization: string): Promise<GrpcAnswer> {
    let meta = this.metadata.get(authorization);
    if (meta === undefined) {
      meta = new Metadata();
      meta.set("authorization", authorization);
      this.metadata.set(authorization, meta);
    }
    const client = this.clients[this.next++ % this.clients.length]!;
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return new Promise((resolve) => {
      client.makeUnaryRequest<Buffer, Buffer>(path, identity, identity, bytes, meta, (err, res) =>
        resolve(
          err === null
            ? { code: 0, reason: "OK", details: "", bytes: res }
            : { code: err.code, reason: reasonOf(err), details: err.details, bytes: undefined },
        ),
      );
    });
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

// ---- HTTP/1.1 -----------------------------------------------------------------------

export interface HttpAnswer {
  /** 0: no answer (the connection closed first). */
  status: number;
  body: string;
}

interface Conn {
  socket: Socket;
  buf: Buffer | null;
  /** A request was written and its connection not yet given back. */
  busy: boolean;
  /** Hears the answer; null once it was told. */
  done: ((a: HttpAnswer) => void) | null;
}

export class HttpPool {
  private readonly idle: Conn[] = [];
  private readonly waiting: { raw: Buffer; done: (a: HttpAnswer) => void }[] = [];
  private waitingHead = 0;
  private closing = false;
  private readonly conns: Conn[] = [];

  private constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  /** `connections` keep-alive connections to `url`'s host and port. */
  static async open(url: string, connections: number): Promise<HttpPool> {
    const u = new URL(url);
    const pool = new HttpPool(u.hostname, Number(u.port));
    for (let i = 0; i < connections; i++) {
      pool.conns.push({ socket: null as never, buf: null, busy: false, done: null });
    }
    await Promise.all(pool.conns.map((c) => pool.connect(c)));
    pool.idle.push(...pool.conns);
    return pool;
  }

  /** The bytes of one request, built once and sent as often as wanted. */
  request(method: string, path: string, authorization: string | null, body?: string): Buffer {
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\n`;
    if (authorization !== null) head += `authorization: ${authorization}\r\n`;
    if (body === undefined) return Buffer.from(`${head}content-length: 0\r\n\r\n`);
    head += `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
    return Buffer.from(head + body);
  }

  /** Sends on an idle connection, or waits for one (first come, first served). */
  send(raw: Buffer): Promise<HttpAnswer> {
    return new Promise((done) => {
      const c = this.idle.pop();
      if (c === undefined) this.waiting.push({ raw, done });
      else this.write(c, raw, done);
    });
  }

  close(): void {
    this.closing = true;
    for (const c of this.conns) c.socket.destroy();
  }

  private write(c: Conn, raw: Buffer, done: (a: HttpAnswer) => void): void {
    c.busy = true;
    c.done = done;
    c.socket.write(raw);
  }

  private release(c: Conn): void {
    c.busy = false;
    if (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead++]!;
      if (this.waitingHead === this.waiting.length) this.waiting.length = this.waitingHead = 0;
      this.write(c, w.raw, w.done);
    } else {
      this.idle.push(c);
    }
  }

  private connect(c: Conn): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`http: no connection to ${this.host}:${this.port}`));
      }, connectMsMax);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      c.socket = socket;
      c.buf = null;
      socket.on("data", (chunk: Buffer) => this.onData(c, chunk));
      socket.on("error", () => {});
      socket.on("close", () => {
        clearTimeout(timer);
        if (this.closing) return;
        // An answer outstanding is lost; the connection is made again
        // (an idle one is still in `idle`: writes wait for the connect).
        const wasBusy = c.busy;
        const done = c.done;
        c.done = null;
        done?.({ status: 0, body: "connection closed" });
        void this.connect(c).then(
          () => {
            if (wasBusy) this.release(c);
          },
          () => {},
        );
      });
    });
  }

  private onData(c: Conn, chunk: Buffer): void {
    c.buf = c.buf === null ? chunk : Buffer.concat([c.buf, chunk]);
    let a: ReturnType<typeof parseAnswer>;
    try {
      a = parseAnswer(c.buf);
    } catch (err) {
      // An answer this pool cannot frame: the connection is dropped, the
      // request counts as unanswered, and the connection is made again.
      const done = c.done;
      c.done = null;
      done?.({ status: 0, body: (err as Error).message });
      c.socket.destroy();
      return;
    }
    if (a === null) return;
    c.buf = a.bytes === c.buf.length ? null : c.buf.subarray(a.bytes);
    const done = c.done;
    c.done = null;
    this.release(c);
    done?.({ status: a.status, body: a.body });
  }
}
