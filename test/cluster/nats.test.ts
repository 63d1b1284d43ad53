import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  connect,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  NatsError,
  StorageType,
} from "nats";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type NatsCluster, startNats } from "./nats.ts";

// The harness against real nats-server processes, and the first checks of the
// JetStream behaviours stockd relies on: msgID deduplication, expected last
// subject sequence, KV revisions, object store chunking, and a replicated
// stream surviving the loss of its leader.

const enc = new TextEncoder();

/** The error a promise rejects with; fails if it resolves. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    const v = await p;
    throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
  } catch (e) {
    return e;
  }
}

/** What an error looks like, for assertion messages. */
function shape(e: unknown): string {
  if (!(e instanceof Error)) return JSON.stringify(e);
  const ne = e as Partial<NatsError>;
  return JSON.stringify({
    class: e.constructor.name,
    message: e.message,
    code: ne.code,
    api_error: ne.api_error,
  });
}

/** Runs f until it succeeds, retrying for up to ms. */
async function retry<T>(ms: number, f: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(200);
    }
  }
}

describe("nats, one server", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let js: JetStreamClient;

  beforeAll(async () => {
    cluster = await startNats();
    nc = await connect({ servers: cluster.url });
    jsm = await nc.jetstreamManager();
    js = nc.jetstream();
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test("msgID deduplicates and a wrong last subject sequence is rejected", async () => {
    expect(cluster.urls).toHaveLength(1);
    expect(cluster.url).toBe(cluster.urls[0]);
    await jsm.streams.add({ name: "T", subjects: ["t.>"], storage: StorageType.File });

    const first = await js.publish("t.a", enc.encode("1"), {
      msgID: "m1",
      expect: { lastSubjectSequence: 0 },
    });
    expect(first).toMatchObject({ stream: "T", seq: 1, duplicate: false });
    // A retry of the same publish (same msgID, same expectation) is reported
    // as a duplicate, not as a sequence conflict: dedup is checked first.
    const again = await js.publish("t.a", enc.encode("1"), {
      msgID: "m1",
      expect: { lastSubjectSequence: 0 },
    });
    expect(again).toMatchObject({ stream: "T", seq: 1, duplicate: true });

    const e = await rejection(
      js.publish("t.a", enc.encode("2"), { msgID: "m2", expect: { lastSubjectSequence: 0 } }),
    );
    expect(e, shape(e)).toBeInstanceOf(NatsError);
    const ne = e as NatsError;
    expect(ne.code, shape(e)).toBe("400");
    expect(ne.message, shape(e)).toBe("wrong last sequence: 1");
    expect(ne.api_error, shape(e)).toEqual({
      code: 400,
      err_code: 10071,
      description: "wrong last sequence: 1",
    });

    // The expectation is per subject.
    const second = await js.publish("t.a", enc.encode("2"), {
      msgID: "m2",
      expect: { lastSubjectSequence: 1 },
    });
    expect(second).toMatchObject({ seq: 2, duplicate: false });
    const other = await js.publish("t.b", enc.encode("1"), { expect: { lastSubjectSequence: 0 } });
    expect(other).toMatchObject({ seq: 3, duplicate: false });
    expect((await jsm.streams.info("T")).state.messages).toBe(3);
  }, 30_000);

  test("KV: update with a stale revision fails", async () => {
    const kv = await js.views.kv("stock");
    const r1 = await kv.create("k", enc.encode("v1"));
    const r2 = await kv.update("k", enc.encode("v2"), r1);
    expect(r2).toBeGreaterThan(r1);

    const stale = await rejection(kv.update("k", enc.encode("v3"), r1));
    expect(stale, shape(stale)).toBeInstanceOf(NatsError);
    const ne = stale as NatsError;
    expect(ne.code, shape(stale)).toBe("400");
    expect(ne.message, shape(stale)).toBe(`wrong last sequence: ${r2}`);
    expect(ne.api_error?.err_code, shape(stale)).toBe(10071);

    // create on an existing key fails the same way.
    const exists = await rejection(kv.create("k", enc.encode("v3")));
    expect((exists as NatsError).api_error?.err_code, shape(exists)).toBe(10071);

    const entry = await kv.get("k");
    expect(entry?.revision).toBe(r2);
    expect(entry?.string()).toBe("v2");
  }, 30_000);

  test("object store round-trips 3 MB", async () => {
    const os = await js.views.os("blobs");
    const data = new Uint8Array(randomBytes(3 * 1024 * 1024));
    const info = await os.putBlob({ name: "big" }, data);
    expect(info.size).toBe(data.length);
    expect(info.chunks).toBeGreaterThan(1);
    const got = await os.getBlob("big");
    expect(got).not.toBeNull();
    expect(Buffer.from(got!).equals(data)).toBe(true);
  }, 30_000);
});

describe("nats, three-node cluster", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;

  beforeAll(async () => {
    cluster = await startNats({ size: 3 });
    // In order, so the client starts on n0 and has to move when it dies.
    nc = await connect({
      servers: cluster.urls,
      noRandomize: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  test("an R3 stream survives SIGKILL of its leader; the server restarts", async () => {
    expect(cluster.urls).toHaveLength(3);
    expect(cluster.url).toBe(cluster.urls.join(","));
    const jsm = await nc.jetstreamManager();
    const js = nc.jetstream();
    const leader = async () => (await jsm.streams.info("R")).cluster?.leader;
    await jsm.streams.add({
      name: "R",
      subjects: ["r.>"],
      storage: StorageType.File,
      num_replicas: 3,
    });
    // Move the stream leader to n0, so killing n0 forces an election.
    await retry(20_000, async () => {
      const now = await leader();
      if (now === "n0") return;
      if (now !== undefined) await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.R");
      await sleep(500);
      throw new Error(`stream leader is ${now}, not n0`);
    });

    const publish = (i: number) =>
      js.publish(`r.${i % 10}`, enc.encode(`${i}`), { msgID: `m${i}`, timeout: 2000 });
    for (let i = 0; i < 100; i++) await publish(i);
    expect(nc.getServer()).toBe(cluster.urls[0]!.replace("nats://", ""));

    await cluster.kill(0);
    // Until n1 or n2 is elected (4-9 s on 2.9) publishes time out or get 503
    // (no responders); with a msgID a retry cannot store twice.
    const failures: string[] = [];
    for (let i = 100; i < 200; i++) {
      await retry(30_000, () =>
        publish(i).catch((e) => {
          failures.push(shape(e));
          throw e;
        }),
      );
    }
    expect(nc.getServer()).not.toBe(cluster.urls[0]!.replace("nats://", ""));
    // The dedup window survived the change of leader.
    expect(await publish(0)).toMatchObject({ seq: 1, duplicate: true });

    const info = await jsm.streams.info("R");
    expect(info.state.messages, `failures while electing: ${failures.join("\n")}`).toBe(200);
    expect(["n1", "n2"]).toContain(info.cluster?.leader);

    await cluster.restart(0);
    // restart() waits for n0's /healthz, which needs its replica current.
    const n0 = (await jsm.streams.info("R")).cluster?.replicas?.find((r) => r.name === "n0");
    expect(n0?.current).toBe(true);
    const only0 = await connect({ servers: cluster.urls[0]! });
    try {
      const info0 = await (await only0.jetstreamManager()).streams.info("R");
      expect(info0.state.messages).toBe(200);
      expect(info0.state.last_seq).toBe(200);
    } finally {
      await only0.close();
    }
  }, 60_000);
});
