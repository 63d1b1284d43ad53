import { nanos, headers as natsHeaders } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterLink, openCluster } from "../../src/cluster/connection.ts";
import { FencedError, Publisher } from "../../src/cluster/publisher.ts";
import { RecordKind, type RecordWrite } from "../../src/persistence/index.ts";
import { type NatsCluster, startNats } from "./nats.ts";

// A leader's publisher against a real nats-server. A write that fails may be
// stored all the same (JetStream stored it; the answer, or the lease check
// after it, failed): the next write on that subject would carry the same
// message id and be dropped by JetStream as its duplicate while the leader
// stored and acknowledged it. So the first failure stops the publisher, and
// the node is told to step down.

let nats: NatsCluster;
let link: ClusterLink;

beforeAll(async () => {
  nats = await startNats();
  link = await openCluster({ servers: nats.url, cluster: "pub", node: "a", replicas: 1 });
}, 30_000);

afterAll(async () => {
  await link?.nc.close();
  await nats?.stop();
});

/** What the stream holds on a subject, oldest first. */
async function stored(subject: string): Promise<unknown[]> {
  const info = await link.jsm.streams.info(link.names.stream);
  const out: unknown[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await link.jsm.streams.getMessage(link.names.stream, { seq }).catch(() => null);
    if (m !== null && m.subject === subject && m.data.length > 0) out.push(m.json());
  }
  return out;
}

const write = (key: string): RecordWrite[] => [{ kind: RecordKind.Key, key, value: { key } }];

/** A fresh leader's publisher (nothing published yet) and what it reported. */
function publisherWith(fenced: () => string | null, on: ClusterLink = link) {
  const failures: string[] = [];
  const publisher = new Publisher({
    link: on,
    epochs: [1],
    gatewayEpoch: 1,
    positions: new Map(),
    fenced,
    onFail: (why) => failures.push(why),
  });
  return { publisher, failures };
}

describe("a publisher whose write failed", () => {
  it("publishes nothing more once a write's outcome is unknown, and says so once", async () => {
    let fence: string | null = null;
    const { publisher, failures } = publisherWith(() => fence);
    const local: unknown[] = [];
    const store = async (w: RecordWrite[]) => void local.push(...w.map((x) => x.key));
    await publisher.publishRecords(write("first"), store);
    // The lease runs out while the second write is in flight: JetStream
    // stores it, the leader may not acknowledge it.
    const second = publisher.publishRecords(write("second"), store);
    fence = "this node's lease ran out before it could renew it";
    await expect(second).rejects.toBeInstanceOf(FencedError);
    // A late renewal succeeds: without the stop, the next write would go
    // out under the second's message id and be dropped as its duplicate.
    fence = null;
    await expect(publisher.publishRecords(write("third"), store)).rejects.toThrow(
      /replication stopped/,
    );
    await expect(
      publisher.publishBatches([
        { partition: 0, epoch: 1, firstSeq: 1, lastSeq: 1, bytes: new Uint8Array([1]) },
      ]),
    ).rejects.toThrow(/replication stopped/);
    expect(publisher.failed?.message).toMatch(/lease ran out/);
    expect(failures).toEqual([expect.stringMatching(/lease ran out/)]);
    // Acknowledged and stored here: only the first. The stream holds the
    // second too (its outcome was unknown to the caller); never the third.
    expect(local).toEqual(["first"]);
    expect((await stored(link.names.records)).flat()).toEqual([
      expect.objectContaining({ key: "first" }),
      expect.objectContaining({ key: "second" }),
    ]);
    expect(await stored(link.names.partition(0))).toEqual([]);
  });

  it("stops when another leader wrote the subject", async () => {
    const { publisher, failures } = publisherWith(() => null);
    const subject = link.names.coordinator;
    const store = async () => undefined;
    await expect(publisher.publishCoordinator([{ key: "x", value: 1 }], store)).resolves.toBe(
      undefined,
    );
    await link.js.publish(subject, new TextEncoder().encode("[]"));
    await expect(publisher.publishCoordinator([{ key: "y", value: 2 }], store)).rejects.toThrow(
      /another leader wrote/,
    );
    await expect(publisher.publishCoordinator([{ key: "z", value: 3 }], store)).rejects.toThrow(
      /replication stopped/,
    );
    expect(failures).toHaveLength(1);
  });
});

describe("a write stored though its answer was lost", () => {
  it("is recognised by its message id once JetStream forgot the id, not taken for another leader's", async () => {
    const own = await openCluster({ servers: nats.url, cluster: "pub2", node: "a", replicas: 1 });
    try {
      // JetStream forgets message ids after the duplicate window (and a new
      // stream leader starts without them): here after 100 ms.
      const info = await own.jsm.streams.info(own.names.stream);
      await own.jsm.streams.update(own.names.stream, {
        ...info.config,
        duplicate_window: nanos(100),
      });
      const { publisher, failures } = publisherWith(() => null, own);
      const subject = own.names.coordinator;
      const store = async () => undefined;
      await publisher.publishCoordinator([{ key: "x", value: 1 }], store);
      const first = (await own.jsm.streams.info(own.names.stream)).state.last_seq;
      // The next write's first try was stored, and its answer lost: the
      // stream holds it under the id the publisher will send again.
      const h = natsHeaders();
      h.set("Nats-Msg-Id", `${subject}:${first + 1}:e1`);
      const stored = await own.js.publish(subject, new TextEncoder().encode("[]"), {
        headers: h,
      });
      await new Promise((r) => setTimeout(r, 300));
      await publisher.publishCoordinator([{ key: "y", value: 2 }], store);
      expect(failures).toEqual([]);
      // It is taken as stored where it is; the next write follows it.
      await publisher.publishCoordinator([{ key: "z", value: 3 }], store);
      const last = await own.jsm.streams.getMessage(own.names.stream, { last_by_subj: subject });
      expect(last.seq).toBe(stored.seq + 1);
      expect(last.json()).toEqual([{ key: "z", value: 3 }]);
    } finally {
      await own.nc.close();
    }
  });
});
